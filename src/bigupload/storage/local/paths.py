"""The one place that turns object keys into paths under the store's root.

A key names a file by its SHA-256: ``<root>/ab/cd/abcd...``. Like S3's flat key space, any
valid key fits (``a`` and ``a/b`` side by side, segments of any length up to the 1,024-byte
key limit), and no key can name a path outside the root. The key itself is kept in the
object's metadata.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bigupload.storage.keys import InvalidKey, validate_key


def path_for(root: Path, key: str, suffix: str = "") -> Path:
    """The path of ``key`` (plus ``suffix``) under ``root``; it never resolves outside it."""
    validate_key(key)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    base = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(base, digest[:2], digest[2:4], digest + suffix))
    if os.path.commonpath([base, candidate]) != base:
        raise InvalidKey("key resolves outside the store")  # a symlink planted in the root
    return Path(candidate)
