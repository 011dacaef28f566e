"""Object keys: the rules every adapter applies before touching the store."""

from __future__ import annotations

import unicodedata

MAX_KEY_BYTES = 1024


class InvalidKey(ValueError):
    """A key no adapter will store: empty, too long, absolute, or escaping its root."""


def validate_key(key: str) -> str:
    """Answer ``key`` if it is a safe relative object key, else raise :class:`InvalidKey`."""
    if not key or len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey("a key must be 1 to 1024 bytes")
    if key.startswith("/") or "\\" in key:
        raise InvalidKey("a key must be a relative path with forward slashes")
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        raise InvalidKey("a key must not contain control characters")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey("a key must not contain empty, '.' or '..' segments")
    return key
