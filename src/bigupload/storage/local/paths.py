"""The one place that turns object keys into paths under the store's root."""

from __future__ import annotations

import os
from pathlib import Path

from bigupload.storage.keys import InvalidKey, validate_key


def path_for(root: Path, key: str, suffix: str = "") -> Path:
    """The path of ``key`` (plus ``suffix``) under ``root``; no key can leave the root."""
    validate_key(key)
    base = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(base, key + suffix))
    if os.path.commonpath([base, candidate]) != base or candidate == base:
        raise InvalidKey("key resolves outside the store")
    return Path(candidate)
