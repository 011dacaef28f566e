"""API key material: how keys are made, shown and hashed."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "bu_"
#: Names and owners end up in object keys, so they keep to a safe alphabet.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: A plausible e-mail address: an ASCII local part, ``@``, and a host name (``example.com``,
#: or a single label such as ``localhost``). Its mail server has the last word.
EMAIL_RE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*")
EMAIL_MAX = 254  # RFC 5321's limit on a forward path


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
    return bool(NAME_RE.fullmatch(name))


def reserved_owner(owner: str, jwt_owner_prefix: str) -> bool:
    """Whether ``owner`` is in the JWT subjects' namespace (``BIGUPLOAD_JWT_OWNER_PREFIX``), which
    no API key may take: else a token's subject could name a key's owner and reach its files.
    Case is ignored, so no key owner differs from a JWT owner by case alone."""
    return bool(jwt_owner_prefix) and owner.lower().startswith(jwt_owner_prefix.lower())


def valid_email(address: str) -> bool:
    local = address.split("@", 1)[0]
    return len(address) <= EMAIL_MAX and len(local) <= 64 and bool(EMAIL_RE.fullmatch(address))
