"""The local-disk adapter: objects in a directory, behind URLs that bigupload signs and serves.

Layout under ``root`` (``<h>`` is the SHA-256 of the key, see :mod:`.paths`)::

    objects/<h>            the bytes
    meta/<h>.json          the key, content type, size, SHA-256 and ETag (MD5, as S3 makes it)
    tmp/                   uploads in flight; an upload becomes visible only by a link

A PUT streams into ``tmp/``, is checked against what its URL allows (length, type, checksum)
and is then linked into place, so a refused or interrupted upload leaves nothing behind. As
with S3's ``If-None-Match: *``, an upload never replaces a stored object: a replayed URL is
refused with 412.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import anyio

from bigupload import clock
from bigupload.storage.base import (
    ObjectNotFound,
    PresignedRequest,
    StorageUnreachable,
    StoredObject,
)
from bigupload.storage.local.paths import path_for
from bigupload.storage.local.tokens import GetGrant, PutGrant, TokenSigner

#: Bytes gathered before one write to disk (off the event loop).
WRITE_BUFFER = 1024 * 1024
_READ_CHUNK = 1024 * 1024


class UploadRejected(Exception):
    """The body does not match what the URL allows; nothing was stored."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Sink:
    """A temporary file being written, with its running digests."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5()  # noqa: S324  (S3's ETag, not a security digest)

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)


class LocalStorage:
    kind = "local"

    def __init__(self, root: Path, *, public_url: str, secret: str, name: str = "local") -> None:
        self.root = Path(root)
        self.bucket = name
        self.public_url = public_url.rstrip("/")
        self.signer = TokenSigner(secret)
        self.objects = self.root / "objects"
        self.meta = self.root / "meta"
        self.tmp = self.root / "tmp"
        for directory in (self.objects, self.meta, self.tmp):
            directory.mkdir(parents=True, exist_ok=True)

    # -- signing ---------------------------------------------------------------------------

    def _url(self, key: str, token: str) -> str:
        return f"{self.public_url}/store/{quote(key, safe='/')}?token={token}"

    def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        size: int,
        checksum_sha256: bytes | None,
        expires_in: int,
    ) -> PresignedRequest:
        path_for(self.objects, key)
        expires_at = _expiry(expires_in)
        checksum = base64.b64encode(checksum_sha256).decode() if checksum_sha256 else None
        token = self.signer.sign_put(PutGrant(key, content_type, size, checksum), expires_at)
        headers = {"Content-Type": content_type, "If-None-Match": "*"}
        if checksum:
            headers["x-amz-checksum-sha256"] = checksum
        return PresignedRequest("PUT", self._url(key, token), expires_at, headers)

    def presign_get(
        self, key: str, *, filename: str, content_type: str, expires_in: int
    ) -> PresignedRequest:
        path_for(self.objects, key)
        expires_at = _expiry(expires_in)
        token = self.signer.sign_get(GetGrant(key, filename, content_type), expires_at)
        return PresignedRequest("GET", self._url(key, token), expires_at)

    # -- receiving -------------------------------------------------------------------------

    async def receive(
        self,
        grant: PutGrant,
        body: AsyncIterator[bytes],
        *,
        content_type: str | None,
        content_length: int | None,
    ) -> StoredObject:
        """Store ``body`` under the grant's key if it is exactly what the grant allows."""
        self._ensure_root()
        if content_type != grant.content_type:
            raise UploadRejected(
                403,
                "content_type_mismatch",
                f"Content-Type must be {grant.content_type!r}, as signed into the URL",
            )
        if content_length is not None and content_length != grant.size:
            raise UploadRejected(
                403,
                "size_mismatch",
                f"Content-Length must be {grant.size}, as signed into the URL",
            )
        target = path_for(self.objects, grant.key)
        meta_path = path_for(self.meta, grant.key, ".json")
        if await anyio.to_thread.run_sync(target.exists):
            raise _already_stored()
        tmp_path = self.tmp / uuid.uuid4().hex
        handle = await anyio.to_thread.run_sync(tmp_path.open, "xb")
        sink = _Sink(handle)
        committed = False
        try:
            buffer = bytearray()
            async for chunk in body:
                if sink.size + len(buffer) + len(chunk) > grant.size:
                    raise UploadRejected(
                        400, "size_mismatch", f"body is longer than the signed {grant.size} bytes"
                    )
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER:
                    await anyio.to_thread.run_sync(sink.write, bytes(buffer))
                    buffer.clear()
            if buffer:
                await anyio.to_thread.run_sync(sink.write, bytes(buffer))
            if sink.size != grant.size:
                raise UploadRejected(
                    400,
                    "size_mismatch",
                    f"body has {sink.size} bytes, the URL was signed for {grant.size}",
                )
            sha = sink.sha256.digest()
            if grant.checksum_sha256 and base64.b64encode(sha).decode() != grant.checksum_sha256:
                raise UploadRejected(
                    400, "checksum_mismatch", "the body's SHA-256 differs from the signed checksum"
                )
            stored = StoredObject(
                key=grant.key,
                size=sink.size,
                etag=f'"{sink.md5.hexdigest()}"',
                content_type=grant.content_type,
                checksum_sha256=sha.hex(),
                last_modified=clock.now(),
            )
            await anyio.to_thread.run_sync(
                self._commit, handle, tmp_path, target, meta_path, stored
            )
            committed = True
            return stored
        finally:
            if not committed:
                await anyio.to_thread.run_sync(_discard, handle, tmp_path)

    def _commit(
        self, handle: IO[bytes], tmp_path: Path, target: Path, meta_path: Path, obj: StoredObject
    ) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp_path, target)  # atomic, and refuses to replace: the first upload wins
        except FileExistsError:
            raise _already_stored() from None
        tmp_path.unlink()
        meta = {
            "key": obj.key,
            "size": obj.size,
            "etag": obj.etag,
            "content_type": obj.content_type,
            "sha256": obj.checksum_sha256,
            "last_modified": obj.last_modified.isoformat() if obj.last_modified else None,
        }
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_tmp = self.tmp / (uuid.uuid4().hex + ".json")
        meta_tmp.write_text(json.dumps(meta))
        os.replace(meta_tmp, meta_path)

    # -- reading ---------------------------------------------------------------------------

    def object_path(self, key: str) -> Path:
        return path_for(self.objects, key)

    def _read_meta(self, key: str) -> dict[str, Any] | None:
        path = path_for(self.objects, key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        try:
            meta: dict[str, Any] = json.loads(path_for(self.meta, key, ".json").read_text())
        except (FileNotFoundError, ValueError):
            meta = {}
        if meta.get("size") != stat.st_size:
            # The bytes changed under the metadata (or it is missing): trust the bytes.
            meta = {"size": stat.st_size}
        meta.setdefault("last_modified", datetime.fromtimestamp(stat.st_mtime, UTC).isoformat())
        return meta

    async def stat(self, key: str, *, with_checksum: bool = False) -> StoredObject | None:
        self._ensure_root()
        meta = await anyio.to_thread.run_sync(self._read_meta, key)
        if meta is None:
            return None
        modified = meta.get("last_modified")
        return StoredObject(
            key=key,
            size=int(meta["size"]),
            etag=meta.get("etag"),
            content_type=meta.get("content_type"),
            checksum_sha256=meta.get("sha256"),
            last_modified=datetime.fromisoformat(modified) if modified else None,
        )

    async def sha256(self, key: str) -> bytes:
        self._ensure_root()
        path = path_for(self.objects, key)

        def digest() -> bytes:
            hasher = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(_READ_CHUNK):
                    hasher.update(chunk)
            return hasher.digest()

        try:
            return await anyio.to_thread.run_sync(digest)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    async def delete(self, key: str) -> None:
        self._ensure_root()
        paths = (path_for(self.objects, key), path_for(self.meta, key, ".json"))

        def remove() -> None:
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

        await anyio.to_thread.run_sync(remove)

    def _ensure_root(self) -> None:
        if not self.objects.is_dir() or not os.access(self.objects, os.W_OK):
            raise StorageUnreachable(f"the local store at {self.root} is missing or read-only")

    async def check(self) -> None:
        self._ensure_root()

    async def close(self) -> None:
        return None


def _already_stored() -> UploadRejected:
    return UploadRejected(
        412,
        "object_exists",
        "an object is already stored under this key: an upload URL stores one object, once",
    )


def _expiry(expires_in: int) -> datetime:
    return (clock.now() + timedelta(seconds=expires_in)).replace(microsecond=0)


def _discard(handle: IO[bytes], path: Path) -> None:
    with contextlib.suppress(OSError):
        handle.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
