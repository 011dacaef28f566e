"""Streaming a request's body into ``tmp/``, checked against what its URL allows.

The body is written as it arrives into a locked temporary file (see :mod:`.tmpfiles`): the
chunks the server hands over are gathered, never copied, up to :data:`WRITE_BUFFER` bytes, then
hashed and written chunk by chunk in a worker thread (one pass over each chunk while it is in
the CPU's cache, one copy into the file). One hash is taken, the SHA-256, which checks the
signed checksum, is recorded with the object and makes its ETag (:func:`etag_of`); the MD5 is
taken as well only when the request sends ``Content-MD5``, which is checked as S3 checks it,
and then makes the ETag, as S3's is. A body longer, shorter or other than signed is
:class:`UploadRejected`, and the file is removed whatever happens unless the caller moved it
into place. A full disk is :class:`StorageFull`.

Why not always S3's MD5: it costs more CPU than everything else the store does with a byte
(1.4 s per GiB here, against 0.6 s for SHA-256 with the CPU's SHA instructions), and nothing
reads an ETag but as an opaque tag of the bytes: uploaders (Uppy, bigupload's client) send
a part's back to complete the upload, the API reports it. A client that wants the MD5 asks
for it with ``Content-MD5``.
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

#: Bytes gathered (as the chunks received, not copied) before one write, off the event loop:
#: what a request in flight holds, at most, besides the server's own buffer (64 KiB). Eight
#: uploads of eight parts at once hold 16 MiB; one worker thread's round trip per 256 KiB
#: costs about 0.15 s of CPU per GiB.
WRITE_BUFFER = 256 * 1024


class UploadRejected(Exception):
    """The body does not match what the URL allows; nothing was stored."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Sink:
    """A temporary file being written, with its running digests: the SHA-256 always, the MD5
    only if asked for (``Content-MD5``)."""

    def __init__(self, handle: IO[bytes], path: Path, *, md5: bool = False) -> None:
        self.handle = handle
        self.path = path
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5() if md5 else None  # noqa: S324  (S3's ETag, not for security)

    @property
    def etag(self) -> str:
        """The ETag of the bytes written (see :func:`etag_of`)."""
        return etag_of(self.sha256.digest(), None if self.md5 is None else self.md5.digest())

    @classmethod
    def create(cls, directory: Path, *, md5: bool = False) -> Sink:
        """A new file in ``directory``, locked until it is discarded (see :mod:`.tmpfiles`)."""
        return cls(*tmpfiles.create(directory), md5=md5)

    def write(self, chunks: Sequence[bytes]) -> None:
        """Hash and write ``chunks``, each while it is fresh in the cache (blocking)."""
        fd = self.handle.fileno()
        sha256, md5 = self.sha256, self.md5
        for chunk in chunks:
            sha256.update(chunk)
            if md5 is not None:
                md5.update(chunk)
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
    content_md5: str | None = None,
) -> AsyncIterator[Sink]:
    """``body`` in a new file in ``tmp/``, refused unless it is exactly ``size`` bytes (or,
    with ``size=None``, at most ``limit`` bytes) of SHA-256 ``checksum`` (base64, if given).
    The file is gone afterwards unless the caller moved it away. A disk that fills up, here
    or in the caller's commit, is :class:`StorageFull`. With ``content_md5`` (the request's
    ``Content-MD5``: the body's MD5, base64) the body must have that MD5, as S3 checks it."""
    md5 = None if content_md5 is None else _md5_of_header(content_md5)
    if size is not None:
        most, code = size, "size_mismatch"
        too_long = f"body is longer than the signed {size} bytes"
    else:
        assert limit is not None
        most, code = limit, "entity_too_large"
        too_long = f"body is larger than the {limit} bytes allowed"
    with disk.room_errors(root):
        sink = await anyio.to_thread.run_sync(
            functools.partial(Sink.create, tmp, md5=md5 is not None)
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
            if md5 is not None and (sink.md5 is None or sink.md5.digest() != md5):
                # S3: 400 BadDigest.
                raise UploadRejected(
                    400, "bad_digest", "the body's MD5 differs from the Content-MD5 sent"
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


def etag_of(sha256: bytes, md5: bytes | None = None) -> str:
    """The ETag of bytes of digests ``sha256`` (and ``md5``, when the client sent its
    Content-MD5): S3's, the quoted hex MD5, if there is one; else the first 16 bytes of the
    SHA-256 in the same shape (32 hex digits, quoted), which S3's multipart ETag (the MD5 of
    the parts' ETags as bytes, see :func:`.multipart.multipart_etag`) takes as it takes MD5s."""
    return f'"{(md5 if md5 is not None else sha256[:16]).hex()}"'


def _md5_of_header(value: str) -> bytes:
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        digest = b""
    if len(digest) != 16:
        # S3: 400 InvalidDigest.
        raise UploadRejected(
            400, "invalid_digest", "Content-MD5 must be the base64 of the body's 16-byte MD5"
        )
    return digest


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
