"""API key material: how keys are made, shown and hashed."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "bu_"
#: Names and owners end up in object keys, so they keep to a safe alphabet.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def generate_key() -> str:
    """A new key: ``bu_`` and 43 URL-safe characters (256 bits of randomness)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key. Keys are random, so one SHA-256 suffices (no stretching)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """The part of a key safe to show in listings, to tell keys apart."""
    return key[:10]


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name))
