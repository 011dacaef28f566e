"""The one place that turns object keys into paths under the store's root.

A key names a file by its SHA-256: ``<root>/ab/cd/abcd...``. Like S3's flat key space, any
valid key fits (``a`` and ``a/b`` side by side, segments of any length up to the 1,024-byte
key limit), and no key can name a path outside the root. The key itself is kept in the
object's metadata.

The store never makes a symbolic link. One planted in it (an operator's mistake, or someone
with write access to the disk) is refused where it would lead a key's path out of the root, or
where it stands in place of the object itself: :class:`ObjectPathRefused`, which callers of the
storage port see as "no object under this key" (the API answers 404 ``object_not_found``, the
store's own URLs 404 ``not_found``). A link to another directory inside the root is followed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

from bigupload.storage.base import ObjectNotFound
from bigupload.storage.keys import InvalidKey, validate_key

log = logging.getLogger("bigupload.storage.local")


class ObjectPathRefused(InvalidKey, ObjectNotFound):
    """A valid key whose path a symbolic link planted in the store leads out of it, or to
    something that is not a regular file: the store neither serves nor writes there."""


def path_for(root: Path, key: str, suffix: str = "") -> Path:
    """The path of ``key`` (plus ``suffix``) under ``root``; it never resolves outside it."""
    validate_key(key)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    base = os.path.realpath(root)
    named = os.path.join(base, digest[:2], digest[2:4], digest + suffix)
    if _no_links(base, (digest[:2], digest[2:4], digest + suffix)):
        return Path(named)  # nothing under the (real) root is a link: ``named`` is real
    candidate = os.path.realpath(named)
    if os.path.commonpath([base, candidate]) != base:
        raise refused(named, "a symbolic link leads it out of the store")
    if os.path.islink(named):
        raise refused(named, "a symbolic link stands in place of the object")
    return Path(candidate)


def _no_links(base: str, parts: tuple[str, ...]) -> bool:
    """Whether no path from ``base`` down through ``parts`` is a symbolic link: one ``lstat``
    per part that exists (what ``realpath`` would do below the root, without walking the root
    again). ``False`` also when something is in the way that ``realpath`` must judge."""
    path = base
    for part in parts:
        path = os.path.join(path, part)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return True  # nor anything below it
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            return False
    return True


def planted_link(root: Path, key: str, suffix: str = "") -> Path | None:
    """The symbolic link standing in place of ``key``'s file, if its directory is inside
    ``root`` (removing it removes the link, never what it leads to); else ``None``."""
    digest = hashlib.sha256(validate_key(key).encode("utf-8")).hexdigest()
    base = os.path.realpath(root)
    directory = os.path.realpath(os.path.join(base, digest[:2], digest[2:4]))
    named = os.path.join(directory, digest + suffix)
    if os.path.commonpath([base, directory]) != base or not os.path.islink(named):
        return None
    return Path(named)


def refused(path: str | Path, why: str) -> ObjectPathRefused:
    """Refuse ``path`` (logged: the store never makes such a thing)."""
    log.warning("the local store refuses %s: %s", path, why)
    return ObjectPathRefused(f"the store refuses this key's path: {why}")
