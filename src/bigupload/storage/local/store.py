"""The local-disk adapter: objects in a directory, behind URLs that bigupload signs and serves.

Layout under ``root`` (``<h>`` is the SHA-256 of the key, see :mod:`.paths`)::

    objects/<h>            the bytes
    meta/<h>.json          the key, content type, size, SHA-256 and ETag (S3's MD5 when the
                           upload sent Content-MD5, else from the SHA-256: :func:`.spool.etag_of`;
                           a multipart object's is S3's ``"<md5 of the part ETags>-<parts>"``,
                           its SHA-256 recorded once asked for, see :meth:`LocalStorage.stat`)
    multipart/<id>/        a multipart upload in progress and its parts (see :mod:`.multipart`)
    tmp/                   uploads in flight; an upload becomes visible only by a link

A PUT streams into ``tmp/``, is checked against what its URL allows (length, type, checksum)
and is then linked into place, so a refused or interrupted upload leaves nothing behind. As
with S3's ``If-None-Match: *``, an upload never replaces a stored object: a replayed URL is
refused with 412.

A browser form upload (``POST /store``, S3's POST policy) streams its ``file`` field the same
way, refused past the largest size its token allows.

Multipart uploads follow S3: a part URL (``?uploadId=..&partNumber=..&token=..``) stores one
part of exactly its signed length (and SHA-256, if signed), or of any length up to 5 GiB when
signed without one, replacing an earlier upload of that part; completing joins the named
parts into the object in a worker thread, streaming, and never replaces a stored object either.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from stat import S_ISREG
from typing import Any
from urllib.parse import quote

import anyio

from bigupload import clock
from bigupload.metrics.store import metered
from bigupload.storage.base import (
    MAX_PART_SIZE,
    MAX_PARTS,
    CompletedPart,
    Leftovers,
    MultipartUpload,
    ObjectNotFound,
    PartToSign,
    PresignedPost,
    PresignedRequest,
    StorageError,
    StorageFull,
    StorageUnreachable,
    StoredObject,
    StoredPart,
    UploadNotFound,
)
from bigupload.storage.keys import validate_key
from bigupload.storage.local import disk, events, tmpfiles
from bigupload.storage.local.multipart import (
    OpenUpload,
    Uploads,
    is_upload_id,
    requires_checksum,
)
from bigupload.storage.local.paths import (
    ObjectPathRefused,
    path_for,
    planted_link,
    refused,
)
from bigupload.storage.local.spool import (
    Sink,
    UploadRejected,
    already_stored,
    discard,
    spooled,
    too_large,
)
from bigupload.storage.local.tokens import (
    GetGrant,
    PartGrant,
    PostGrant,
    PutGrant,
    TokenSigner,
)

log = logging.getLogger("bigupload.storage.local")

_READ_CHUNK = 1024 * 1024


@metered
class LocalStorage:
    kind = "local"

    def __init__(
        self,
        root: Path,
        *,
        public_url: str,
        secret: str,
        name: str = "local",
        min_free_space: int = 0,
    ) -> None:
        self.root = Path(root)
        #: Below this many free bytes on its disk, :meth:`check` reports the store full.
        self.min_free_space = min_free_space
        self.bucket = name
        self.public_url = public_url.rstrip("/")
        self.signer = TokenSigner(secret)
        self.objects = self.root / "objects"
        self.meta = self.root / "meta"
        self.tmp = self.root / "tmp"
        self.multipart = self.root / "multipart"
        for directory in (self.objects, self.meta, self.tmp, self.multipart):
            directory.mkdir(parents=True, exist_ok=True)
        self.uploads = Uploads(self.multipart, self.tmp)
        #: The most a part signed without a length may hold: S3's part limit.
        self.max_part_size = MAX_PART_SIZE
        #: Where S3-shaped ObjectCreated notifications go (see :mod:`.events`); none if unset.
        self.event_sink: events.EventSink | None = None
        self._events = events.EventEmitter()

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

    def presign_post(
        self, key: str, *, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        """A form POST to ``{public_url}/store``: fields ``key``, ``Content-Type`` and ``token``
        (which binds the key, the type, the largest size and the expiry), then ``file``."""
        path_for(self.objects, key)
        if type(max_size) is not int or max_size < 0:
            raise ValueError(f"max_size is a number of bytes, not {max_size!r}")
        expires_at = _expiry(expires_in)
        token = self.signer.sign_post(PostGrant(key, content_type, max_size), expires_at)
        fields = {"key": key, "Content-Type": content_type, "token": token}
        return PresignedPost(url=f"{self.public_url}/store", fields=fields, expires_at=expires_at)

    def presign_get(
        self, key: str, *, filename: str, content_type: str, expires_in: int
    ) -> PresignedRequest:
        path_for(self.objects, key)
        expires_at = _expiry(expires_in)
        token = self.signer.sign_get(GetGrant(key, filename, content_type), expires_at)
        return PresignedRequest("GET", self._url(key, token), expires_at)

    def presign_parts(
        self, key: str, upload_id: str, parts: Sequence[PartToSign], *, expires_in: int
    ) -> list[PresignedRequest]:
        validate_key(key)
        if not is_upload_id(upload_id):
            raise ValueError("not an upload id of this store")
        checksum_required = requires_checksum(upload_id)
        specs: list[tuple[int, int | None, str | None]] = []
        for part in parts:
            number, size, digest = part.part_number, part.size, part.checksum_sha256
            if type(number) is not int or not 1 <= number <= MAX_PARTS:
                raise ValueError(f"part numbers run from 1 to {MAX_PARTS}, not {number!r}")
            if size is not None and (type(size) is not int or not 0 <= size <= MAX_PART_SIZE):
                raise ValueError(f"a part has 0 to {MAX_PART_SIZE} bytes, not {size!r}")
            if digest is None:
                if checksum_required:
                    raise ValueError("the upload takes SHA-256 checksums: sign every part's")
                specs.append((number, size, None))
            elif len(digest) != hashlib.sha256().digest_size:
                raise ValueError("a SHA-256 digest has 32 bytes")
            else:
                specs.append((number, size, base64.b64encode(digest).decode()))
        expires_at = _expiry(expires_in)
        tokens = self.signer.sign_parts(key, upload_id, specs, expires_at)
        base = f"{self.public_url}/store/{quote(key, safe='/')}?uploadId={upload_id}&partNumber="
        return [
            PresignedRequest(
                "PUT",
                f"{base}{number}&token={token}",
                expires_at,
                {"x-amz-checksum-sha256": checksum} if checksum else {},
            )
            for (number, _, checksum), token in zip(specs, tokens, strict=True)
        ]

    # -- receiving -------------------------------------------------------------------------

    async def receive(
        self,
        grant: PutGrant,
        body: AsyncIterator[bytes],
        *,
        content_type: str | None,
        content_length: int | None,
        content_md5: str | None = None,
    ) -> StoredObject:
        """Store ``body`` under the grant's key if it is exactly what the grant allows (and of
        MD5 ``content_md5``, the request's ``Content-MD5``, if sent: its ETag is then the MD5)."""
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
        if await anyio.to_thread.run_sync(path_for(self.objects, grant.key).exists):
            raise already_stored()
        async with self._spooled(
            body, size=grant.size, checksum=grant.checksum_sha256, content_md5=content_md5
        ) as sink:
            return await self._store_object(sink, grant.key, grant.content_type)

    async def receive_form(
        self, grant: PostGrant, body: AsyncIterator[bytes], *, content_type: str | None
    ) -> StoredObject:
        """Store a form upload's ``file`` (``body``) if it is what the grant allows:
        ``content_type`` is the form's ``Content-Type`` field, the file 0 to ``max_size`` bytes.
        """
        self._ensure_root()
        if content_type != grant.content_type:
            raise UploadRejected(
                403,
                "content_type_mismatch",
                f"the Content-Type field must be {grant.content_type!r}, as signed",
            )
        if await anyio.to_thread.run_sync(path_for(self.objects, grant.key).exists):
            raise already_stored()
        async with self._spooled(body, size=None, limit=grant.max_size) as sink:
            return await self._store_object(sink, grant.key, grant.content_type)

    async def _store_object(self, sink: Sink, key: str, content_type: str) -> StoredObject:
        target = path_for(self.objects, key)
        meta_path = path_for(self.meta, key, ".json")
        stored = StoredObject(
            key=key,
            size=sink.size,
            etag=sink.etag,
            content_type=content_type,
            checksum_sha256=sink.sha256.hexdigest(),
            last_modified=clock.now(),
        )
        await anyio.to_thread.run_sync(self._commit, sink, target, meta_path, stored)
        return stored

    def _spooled(
        self,
        body: AsyncIterator[bytes],
        *,
        size: int | None,
        limit: int | None = None,
        checksum: str | None = None,
        content_md5: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[Sink]:
        return spooled(
            body,
            tmp=self.tmp,
            root=self.root,
            size=size,
            limit=limit,
            checksum=checksum,
            content_md5=content_md5,
        )

    def _commit(self, sink: Sink, target: Path, meta_path: Path, obj: StoredObject) -> None:
        sink.finish()
        try:
            self._publish(sink.path, target, meta_path, obj)
        except FileExistsError:
            raise already_stored() from None

    def _publish(
        self, tmp_path: Path, target: Path, meta_path: Path, obj: StoredObject, **extra: str
    ) -> None:
        """Link the bytes at ``tmp_path`` into place, then write their metadata.

        Raises :class:`FileExistsError`, and changes nothing, if an object is stored there.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(tmp_path, target)  # atomic, and refuses to replace: the first upload wins
        try:
            self._write_meta(meta_path, obj, extra)
        except BaseException:
            target.unlink()  # no object without its metadata: the upload can be sent again
            raise
        tmp_path.unlink()

    def _write_meta(self, meta_path: Path, obj: StoredObject, extra: dict[str, str]) -> None:
        meta = {
            "key": obj.key,
            "size": obj.size,
            "etag": obj.etag,
            "content_type": obj.content_type,
            "sha256": obj.checksum_sha256,
            "last_modified": obj.last_modified.isoformat() if obj.last_modified else None,
            **extra,
        }
        self._write_json(meta_path, meta)

    def _write_json(self, meta_path: Path, meta: dict[str, Any]) -> None:
        """Replace ``meta_path`` with ``meta`` atomically."""
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_tmp = self.tmp / (uuid.uuid4().hex + ".json")
        try:
            meta_tmp.write_text(json.dumps(meta))
            os.replace(meta_tmp, meta_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                meta_tmp.unlink()
            raise

    async def receive_part(
        self,
        grant: PartGrant,
        body: AsyncIterator[bytes],
        *,
        content_length: int | None,
        content_md5: str | None = None,
    ) -> StoredPart:
        """Store ``body`` as the grant's part if it is exactly what the grant allows (any
        length up to :attr:`max_part_size` when the grant binds none), of MD5 ``content_md5``
        if sent (the part's ETag is then its MD5)."""
        if grant.size is None:
            if content_length is not None and content_length > self.max_part_size:
                raise too_large(self.max_part_size)
        elif content_length is not None and content_length != grant.size:
            raise UploadRejected(
                403, "size_mismatch", f"Content-Length must be {grant.size}, as signed into the URL"
            )
        upload = await anyio.to_thread.run_sync(self._upload_info, grant.key, grant.upload_id)
        if upload.checksum_sha256 and grant.checksum_sha256 is None:
            raise UploadRejected(
                403, "checksum_required", "this upload takes parts signed with their SHA-256 only"
            )
        async with self._spooled(
            body,
            size=grant.size,
            limit=self.max_part_size,
            checksum=grant.checksum_sha256,
            content_md5=content_md5,
        ) as sink:
            fields = {
                "size": sink.size,
                "etag": sink.etag,
                "checksum_sha256": grant.checksum_sha256,
                "last_modified": clock.now().isoformat(),
            }
            part = await anyio.to_thread.run_sync(self._store_part, grant, sink, fields)
        return part

    def _upload_info(self, key: str, upload_id: str) -> OpenUpload:
        self._ensure_multipart()
        return self.uploads.info(key, upload_id)

    def _store_part(self, grant: PartGrant, sink: Sink, fields: dict[str, Any]) -> StoredPart:
        sink.finish()
        with self.uploads.locked(grant.key, grant.upload_id, exclusive=True) as upload:
            return upload.put_part(grant.part_number, sink.path, fields).stored()

    # -- multipart uploads -----------------------------------------------------------------

    async def create_multipart(
        self, key: str, *, content_type: str, checksum_sha256: bool = False
    ) -> str:
        def create() -> str:
            self._ensure_multipart()
            path_for(self.objects, key)
            with disk.room_errors(self.root):
                return self.uploads.create(
                    key,
                    content_type=content_type,
                    checksum_sha256=checksum_sha256,
                    now=clock.now(),
                )

        return await anyio.to_thread.run_sync(create)

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        def parts() -> list[StoredPart]:
            self._ensure_multipart()
            validate_key(key)
            with self.uploads.locked(key, upload_id, exclusive=False) as upload:
                return [record.stored() for _, record in sorted(upload.parts().items())]

        return await anyio.to_thread.run_sync(parts)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> StoredObject:
        stored = await anyio.to_thread.run_sync(self._complete, key, upload_id, list(parts))
        self.emit_created(stored, events.COMPLETE_MULTIPART)
        return stored

    def _complete(self, key: str, upload_id: str, named: list[CompletedPart]) -> StoredObject:
        with disk.room_errors(self.root):  # the join undoes itself: the upload stays whole
            return self._join(key, upload_id, named)

    def _join(self, key: str, upload_id: str, named: list[CompletedPart]) -> StoredObject:
        self._ensure_multipart()
        target, meta_path = path_for(self.objects, key), path_for(self.meta, key, ".json")
        with self.uploads.locked(key, upload_id, exclusive=True) as upload:
            chosen = upload.choose(named)
            existing = self._read_meta(key)
            if existing is not None:
                if existing.get("upload_id") == upload_id:
                    # An earlier call made the object and stopped before ending the upload.
                    upload.remove()
                    raise UploadNotFound(upload_id)
                raise _object_exists(key)
            assembled = upload.assemble(chosen)
            stored = StoredObject(
                key=key,
                size=assembled.size,
                etag=assembled.etag,
                content_type=upload.content_type,
                checksum_sha256=None,  # computed from the bytes when asked for: see stat()
                last_modified=clock.now(),
            )
            try:
                self._publish(assembled.path, target, meta_path, stored, upload_id=upload_id)
            except FileExistsError:
                raise _object_exists(key) from None
            finally:
                discard(assembled.handle, assembled.path)  # and its lock released
            upload.remove()
            return stored

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        def abort() -> None:
            self._ensure_multipart()
            validate_key(key)
            with self.uploads.locked(key, upload_id, exclusive=True) as upload:
                upload.remove()

        await anyio.to_thread.run_sync(abort)

    async def list_multipart_uploads(self, prefix: str = "") -> list[MultipartUpload]:
        def uploads() -> list[MultipartUpload]:
            self._ensure_multipart()
            return self.uploads.in_progress(prefix)

        return await anyio.to_thread.run_sync(uploads)

    # -- reading ---------------------------------------------------------------------------

    def object_path(self, key: str) -> Path:
        return path_for(self.objects, key)

    def _read_meta(self, key: str) -> dict[str, Any] | None:
        path = path_for(self.objects, key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        if not S_ISREG(stat.st_mode):
            raise refused(path, "it is not a regular file")
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
        """What is stored under ``key``. ``with_checksum``: with the SHA-256 of its bytes,
        computed (one read of the object, then remembered in its metadata) if none was recorded
        when it was stored: an upload records one only when its URL was signed with it."""
        self._ensure_root()
        meta = await anyio.to_thread.run_sync(self._read_meta, key)
        if meta is None:
            return None
        checksum = meta.get("sha256")
        if with_checksum and not checksum:
            try:
                checksum = (await self.sha256(key)).hex()
            except ObjectNotFound:
                return None
        modified = meta.get("last_modified")
        return StoredObject(
            key=key,
            size=int(meta["size"]),
            etag=meta.get("etag"),
            content_type=meta.get("content_type"),
            checksum_sha256=checksum,
            last_modified=datetime.fromisoformat(modified) if modified else None,
        )

    async def sha256(self, key: str) -> bytes:
        """The SHA-256 of the stored bytes, read whole; remembered in the object's metadata,
        where :meth:`stat` finds it."""
        self._ensure_root()
        try:
            return await anyio.to_thread.run_sync(self._digest, key)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def _digest(self, key: str) -> bytes:
        path = path_for(self.objects, key)
        meta = self._read_meta(key)
        hasher = hashlib.sha256()
        buffer = bytearray(_READ_CHUNK)
        view = memoryview(buffer)
        with path.open("rb", buffering=0) as handle:
            before = os.fstat(handle.fileno())
            while count := handle.readinto(buffer):
                hasher.update(view[:count])
        digest = hasher.digest()
        if meta is not None and "etag" in meta and not meta.get("sha256"):
            self._remember_sha256(key, meta, before, digest.hex())
        return digest

    def _remember_sha256(
        self, key: str, hashed: dict[str, Any], identity: os.stat_result, sha256_hex: str
    ) -> None:
        """Add ``sha256_hex`` to the object's metadata if it still describes the bytes hashed:
        the same file (device, inode, size) and the same metadata (an object deleted and stored
        again meanwhile has other metadata, or another file). Best effort: a failure to write
        leaves the metadata as it was, and the next caller hashes again."""
        meta_path = path_for(self.meta, key, ".json")
        try:
            now = os.stat(path_for(self.objects, key), follow_symlinks=False)
            current = json.loads(meta_path.read_text())
            same_file = (now.st_dev, now.st_ino, now.st_size) == (
                identity.st_dev,
                identity.st_ino,
                identity.st_size,
            )
            if not same_file or current != {k: v for k, v in hashed.items() if k in current}:
                return
            with disk.room_errors(self.root):
                self._write_json(meta_path, current | {"sha256": sha256_hex})
        except (OSError, ValueError, StorageFull, ObjectPathRefused):
            return

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError("a range starts at 0 or later and holds 0 or more bytes")
        self._ensure_root()
        path = path_for(self.objects, key)

        def read() -> bytes:
            with path.open("rb") as handle:
                handle.seek(start)
                return handle.read(length)

        try:
            return await anyio.to_thread.run_sync(read)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    async def delete(self, key: str) -> None:
        """Remove the object; a symbolic link planted in its place goes too (never what it
        leads to), one that leads its directory out of the store is left to the operator."""
        self._ensure_root()

        def remove() -> None:
            paths: list[Path | None] = [path_for(self.meta, key, ".json")]
            try:
                paths.append(path_for(self.objects, key))
            except ObjectPathRefused:
                paths.append(planted_link(self.objects, key))
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    if path is not None:
                        path.unlink()

        await anyio.to_thread.run_sync(remove)

    def _ensure_root(self) -> None:
        if not self.objects.is_dir() or not os.access(self.objects, os.W_OK):
            raise StorageUnreachable(f"the local store at {self.root} is missing or read-only")

    def _ensure_multipart(self) -> None:
        self._ensure_root()
        if not self.multipart.is_dir() or not self.tmp.is_dir():
            raise StorageUnreachable(f"the local store at {self.root} is missing or read-only")

    async def check(self) -> None:
        """:class:`StorageUnreachable` if the store's directory is missing or read-only, and
        :class:`StorageFull` if its disk is full or has less than :attr:`min_free_space` free."""
        self._ensure_root()
        free = await anyio.to_thread.run_sync(disk.free_bytes, self.root)
        if free == 0 or free < self.min_free_space:
            raise StorageFull(
                f"the local store's disk is full: {free} bytes free at {self.root}, "
                f"below the floor of {self.min_free_space} (BIGUPLOAD_LOCAL_MIN_FREE_SPACE)"
            )

    async def remove_leftovers(self) -> Leftovers:
        """Remove from ``tmp/`` what uploads and joins cut off by a crash left there, never a
        file a live request (of any process) writes (see :mod:`.tmpfiles`)."""
        removed = await anyio.to_thread.run_sync(tmpfiles.remove_leftovers, self.tmp)
        if removed.files:
            log.info(
                "removed %d leftover temporary file(s), %d bytes, from %s",
                removed.files,
                removed.bytes,
                self.tmp,
            )
        return removed

    def emit_created(self, stored: StoredObject, event_name: str = events.PUT) -> None:
        """Tell the event sink, in the background, that ``stored`` was created."""
        self._events.emit(self.event_sink, events.object_created(self.bucket, stored, event_name))

    async def drain_events(self) -> None:
        """Wait for the event deliveries in flight."""
        await self._events.drain()

    async def close(self) -> None:
        await self._events.drain()


def _object_exists(key: str) -> StorageError:
    # As S3 answers CompleteMultipartUpload with If-None-Match: * (412 PreconditionFailed):
    # the object stays, and so does the upload, which the caller may abort.
    return StorageError(f"an object is already stored under {key!r}; the upload was kept")


def _expiry(expires_in: int) -> datetime:
    return (clock.now() + timedelta(seconds=expires_in)).replace(microsecond=0)
