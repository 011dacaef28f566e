"""The local file being sent: read by offset in small chunks, so memory stays small whatever
the file or part size, and never through a shared file position, so threads can share it."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from bigupload.client.errors import FileChangedError

#: Bytes read at once; what one worker holds in memory at a time.
CHUNK_SIZE = 1024 * 1024


class Cancelled(Exception):
    """The transfer was stopped (Ctrl-C, or another part failed for good)."""


class SourceFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        stat = os.fstat(self.fd)
        self.size = stat.st_size
        self.mtime_ns = stat.st_mtime_ns

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def changed(self) -> bool:
        """Whether the file on disk is no longer the one this upload began with."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return True
        return (stat.st_size, stat.st_mtime_ns) != (self.size, self.mtime_ns)

    def chunks(
        self,
        offset: int,
        length: int,
        *,
        stop: Callable[[], bool] | None = None,
        sent: Callable[[int], None] | None = None,
    ) -> Iterator[bytes]:
        """``length`` bytes from ``offset``, chunk by chunk; ``sent(n)`` after each chunk was
        taken, and :class:`Cancelled` as soon as ``stop()`` says so."""
        end = offset + length
        while offset < end:
            if stop is not None and stop():
                raise Cancelled
            chunk = os.pread(self.fd, min(CHUNK_SIZE, end - offset), offset)
            if not chunk:
                raise FileChangedError(f"{self.path} became shorter while it was being sent")
            yield chunk
            offset += len(chunk)
            if sent is not None:
                sent(len(chunk))

    def sha256(self, offset: int, length: int, stop: Callable[[], bool] | None = None) -> bytes:
        digest = hashlib.sha256()
        for chunk in self.chunks(offset, length, stop=stop):
            digest.update(chunk)
        return digest.digest()


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()
