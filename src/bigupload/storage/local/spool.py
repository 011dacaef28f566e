"""Streaming a request's body into ``tmp/``, checked against what its URL allows.

The body is written as it arrives (off the event loop, :data:`WRITE_BUFFER` at a time) into a
locked temporary file (see :mod:`.tmpfiles`) with its running SHA-256 and MD5; a body longer,
shorter or other than signed is :class:`UploadRejected`, and the file is removed whatever
happens unless the caller moved it into place. A full disk is :class:`StorageFull`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import anyio

from bigupload.storage.local import disk, tmpfiles

#: Bytes gathered before one write to disk (off the event loop).
WRITE_BUFFER = 1024 * 1024


class UploadRejected(Exception):
    """The body does not match what the URL allows; nothing was stored."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Sink:
    """A temporary file being written, with its running digests."""

    def __init__(self, handle: IO[bytes], path: Path) -> None:
        self.handle = handle
        self.path = path
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5()  # noqa: S324  (S3's ETag, not a security digest)

    @classmethod
    def create(cls, directory: Path) -> Sink:
        """A new file in ``directory``, locked until it is discarded (see :mod:`.tmpfiles`)."""
        return cls(*tmpfiles.create(directory))

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)

    def finish(self) -> None:
        """Flush the bytes to disk before the file is moved into place; it stays open (and
        locked: no sweep removes it) until it is discarded."""
        self.handle.flush()
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
        sink = await anyio.to_thread.run_sync(Sink.create, tmp)
        try:
            buffer = bytearray()
            async for chunk in body:
                if sink.size + len(buffer) + len(chunk) > most:
                    raise UploadRejected(400, code, too_long)
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER:
                    await anyio.to_thread.run_sync(sink.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await anyio.to_thread.run_sync(sink.write, bytes(buffer))
            if size is not None and sink.size != size:
                raise UploadRejected(
                    400,
                    "size_mismatch",
                    f"body has {sink.size} bytes, the URL was signed for {size}",
                )
            if checksum and base64.b64encode(sink.sha256.digest()).decode() != checksum:
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
