"""The local store's ``tmp/``: files made under a lock, and what a crash left there removed.

Every upload in flight (a PUT, a form POST, a part) and every join of a multipart upload
writes a file in ``tmp/`` named by 32 hex digits. Its writer holds an exclusive ``flock`` on it
from the moment it exists until its bytes are moved into place or discarded; the lock goes with
the writer's process, so a file whose lock can be taken has no live writer in any process
sharing the store on one machine (``serve --workers N``, ``bigupload worker``, ``bigupload
sweep``). Not over NFS, where Linux emulates ``flock`` with locks a process never conflicts
with itself on: keep ``tmp/`` local, as the store's data directory. The one moment without the
lock, between creating the file and locking it, is closed on the writer's side: having locked
it, the writer checks the name still leads to its file, and starts over with a new one if a
sweeper removed it meanwhile. No clock is trusted, so a file left by a process killed a second
ago is removed at once (on the next start, or by the next sweep).

The other entries are removed by age, :data:`STALE_AFTER`: the JSON of an object or a part
while it is being replaced, and an upload directory while it is built (``<id>.new``), exist for
an instant while their writer lives. An ended upload's directory being deleted
(``<hex>.removed``) is nobody's: deleting it twice is harmless, so it goes whatever its age.

These functions block (disk, locks): the store calls them in worker threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bigupload.storage.base import Leftovers, StorageError

#: The name of a locked file (an upload in flight, a join).
LOCKED_NAME = re.compile(r"[0-9a-f]{32}")
#: Seconds after which an entry that no lock guards is surely left over.
STALE_AFTER = 15 * 60
_ATTEMPTS = 8


@dataclass
class _Tally:
    files: int = 0
    bytes: int = 0

    def add(self, files: int, size: int) -> None:
        self.files += files
        self.bytes += size


def create(directory: Path) -> tuple[IO[bytes], Path]:
    """A new file in ``directory``, open for writing and locked until it is closed."""
    for _ in range(_ATTEMPTS):
        path = directory / uuid.uuid4().hex
        handle = path.open("xb")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            if _still_named(handle, path):
                return handle, path
        except BaseException:
            handle.close()
            raise
        handle.close()  # a sweeper took it between its creation and our lock: another one
    raise StorageError(f"could not make a temporary file in {directory}")


def _still_named(handle: IO[bytes], path: Path) -> bool:
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(handle.fileno())
    return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)


def remove_leftovers(directory: Path, *, stale_after: float = STALE_AFTER) -> Leftovers:
    """Remove from ``directory`` what no live writer holds (see the module's doc)."""
    removed = _Tally()
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return Leftovers(0, 0)
    for entry in entries:
        path = Path(entry.path)
        try:
            if LOCKED_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                size = _remove_unlocked(path)
                if size is not None:
                    removed.add(1, size)
            elif entry.name.endswith(".removed") and entry.is_dir(follow_symlinks=False):
                removed.add(*_remove_tree(path))
            elif now - entry.stat(follow_symlinks=False).st_mtime > stale_after:
                if entry.is_dir(follow_symlinks=False):
                    removed.add(*_remove_tree(path))
                else:
                    size = entry.stat(follow_symlinks=False).st_size
                    path.unlink()
                    removed.add(1, size)
        except FileNotFoundError:
            continue  # its writer moved it into place, or another sweeper removed it
    return Leftovers(removed.files, removed.bytes)


def _remove_unlocked(path: Path) -> int | None:
    """Remove ``path`` if no writer holds its lock; answer its size, or ``None`` if it is held."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # an upload or a join in flight
        size = os.fstat(fd).st_size
        path.unlink()
        return size
    finally:
        os.close(fd)  # releases the lock


def _remove_tree(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(root, name)).st_size
                files += 1
    shutil.rmtree(path, ignore_errors=True)
    return files, size
