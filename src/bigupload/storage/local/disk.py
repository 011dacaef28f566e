"""The local store's disk running out of room: a full disk (``ENOSPC``) or an exhausted quota
(``EDQUOT``) is :class:`StorageFull`, which the API answers 507 ``insufficient_storage``.

The store's writes undo what they did when one fails (see :mod:`.store`), so a full disk leaves
nothing behind and the same request succeeds once space is freed.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from bigupload.storage.base import StorageFull

#: The errors of a write that found no room.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL


@contextlib.contextmanager
def room_errors(root: Path) -> Iterator[None]:
    """Turn a write that found no room under ``root`` into :class:`StorageFull`."""
    try:
        yield
    except OSError as exc:
        if is_full(exc):
            raise StorageFull(f"no space left on the local store's disk at {root}") from exc
        raise


def free_bytes(path: Path) -> int:
    """The bytes an unprivileged writer may still write on the file system of ``path``."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize
