"""Streaming a request's body into ``tmp/``, checked against what its URL allows.

The body is written as it arrives into a locked temporary file (see :mod:`.tmpfiles`): the
chunks the server hands over are gathered, never copied, up to :data:`WRITE_BUFFER` bytes, then
hashed and written chunk by chunk in a worker thread (one pass over each chunk while it is in
the CPU's cache, one copy into the file). The hashes are only those needed: the MD5 of S3's
ETag, and the SHA-256 only when the URL was signed with one. A body longer, shorter or other
than signed is :class:`UploadRejected`, and the file is removed whatever happens unless the
caller moved it into place. A full disk is :class:`StorageFull`.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO

import anyio

from bigupload.storage.local import disk, tmpfiles

#: Bytes gathered (as the chunks received, not copied) before one write, off the event loop.
WRITE_BUFFER = 1024 * 1024


class UploadRejected(Exception):
    """The body does not match what the URL allows; nothing was stored."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Sink:
    """A temporary file being written, with its running digests: the MD5 always (S3's ETag),
    the SHA-256 only if asked for."""

    def __init__(self, handle: IO[bytes], path: Path, *, sha256: bool = False) -> None:
        self.handle = handle
        self.path = path
        self.size = 0
        self.md5 = hashlib.md5()  # noqa: S324  (S3's ETag, not a security digest)
        self.sha256 = hashlib.sha256() if sha256 else None

    @classmethod
    def create(cls, directory: Path, *, sha256: bool = False) -> Sink:
        """A new file in ``directory``, locked until it is discarded (see :mod:`.tmpfiles`)."""
        return cls(*tmpfiles.create(directory), sha256=sha256)

    def write(self, chunks: Sequence[bytes]) -> None:
        """Hash and write ``chunks``, each while it is fresh in the cache (blocking)."""
        fd = self.handle.fileno()
        md5, sha256 = self.md5, self.sha256
        for chunk in chunks:
            md5.update(chunk)
            if sha256 is not None:
                sha256.update(chunk)
            written = os.write(fd, chunk)
            while written < len(chunk):  # a regular file takes it all, short of a full disk
                written += os.write(fd, memoryview(chunk)[written:])
            self.size += len(chunk)

    def finish(self) -> None:
        """Flush the bytes to disk before the file is moved into place; it stays open (and
        locked: no sweep removes it) until it is discarded."""
        os.fsync(self.handle.fileno())


@contextlib.asynccontextmanager
async def spooled(
    body: AsyncIterator[bytes],
    *,
    tmp: Path,
    root: Path,
    size: int | None,
    limit: int | None = None,
    checksum: str | None = None,
) -> AsyncIterator[Sink]:
    """``body`` in a new file in ``tmp/``, refused unless it is exactly ``size`` bytes (or,
    with ``size=None``, at most ``limit`` bytes) of SHA-256 ``checksum`` (base64, if given).
    The file is gone afterwards unless the caller moved it away. A disk that fills up, here
    or in the caller's commit, is :class:`StorageFull`."""
    if size is not None:
        most, code = size, "size_mismatch"
        too_long = f"body is longer than the signed {size} bytes"
    else:
        assert limit is not None
        most, code = limit, "entity_too_large"
        too_long = f"body is larger than the {limit} bytes allowed"
    with disk.room_errors(root):
        sink = await anyio.to_thread.run_sync(
            functools.partial(Sink.create, tmp, sha256=bool(checksum))
        )
        try:
            pending: list[bytes] = []
            gathered = 0
            async for chunk in body:
                if sink.size + gathered + len(chunk) > most:
                    raise UploadRejected(400, code, too_long)
                if chunk:
                    pending.append(chunk)
                    gathered += len(chunk)
                if gathered >= WRITE_BUFFER:
                    await anyio.to_thread.run_sync(sink.write, pending)
                    pending, gathered = [], 0
            if pending:
                await anyio.to_thread.run_sync(sink.write, pending)
            if size is not None and sink.size != size:
                raise UploadRejected(
                    400,
                    "size_mismatch",
                    f"body has {sink.size} bytes, the URL was signed for {size}",
                )
            if checksum and (
                sink.sha256 is None or base64.b64encode(sink.sha256.digest()).decode() != checksum
            ):
                raise UploadRejected(
                    400,
                    "checksum_mismatch",
                    "the body's SHA-256 differs from the signed checksum",
                )
            yield sink
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(discard, sink.handle, sink.path)


def discard(handle: IO[bytes], path: Path) -> None:
    with contextlib.suppress(OSError):
        handle.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def already_stored() -> UploadRejected:
    return UploadRejected(
        412,
        "object_exists",
        "an object is already stored under this key: an upload URL stores one object, once",
    )


def too_large(limit: int) -> UploadRejected:
    # S3 answers 400 EntityTooLarge.
    return UploadRejected(400, "entity_too_large", f"body is larger than the {limit} bytes allowed")
