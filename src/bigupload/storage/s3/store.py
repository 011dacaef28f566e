"""The S3 adapter: any S3-compatible store (AWS S3, MinIO, Ceph RGW, R2, ...) through boto3.

One client per process, built by :func:`build_client` and injected. Signing is local CPU work
and runs inline; every network call runs in a worker thread, never on the event loop.

Upload URLs sign ``Content-Type``, ``Content-Length``, the checksum when declared, and
``If-None-Match: *``: the store refuses another body, and refuses a replay once an object exists.

Multipart uploads: part URLs sign ``Content-Length`` (the part's exact size) and, when the
upload takes checksums, the part's ``x-amz-checksum-sha256``; they are signed in bulk by
:mod:`bigupload.storage.s3.presign` (about 5 µs each instead of botocore's 210 µs), which checks
its first URL of each batch against botocore's.

Permissions the credentials need on the bucket (IAM actions): ``s3:PutObject`` (also needed for
CreateMultipartUpload, UploadPart and CompleteMultipartUpload), ``s3:GetObject``,
``s3:DeleteObject``, ``s3:ListBucket`` (a HEAD of a missing key answers 404 rather than 403 only
with ListBucket), ``s3:AbortMultipartUpload``, ``s3:ListMultipartUploadParts`` and
``s3:ListBucketMultipartUploads``. Objects live under ``uploads/<owner>/<yyyy>/<mm>/<uuid>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import operator
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, TypeVar

import anyio
import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from bigupload import clock
from bigupload.metrics.store import metered
from bigupload.storage.base import (
    MAX_PART_SIZE,
    MAX_PARTS,
    CompletedPart,
    MultipartUpload,
    ObjectNotFound,
    PartsRejected,
    PartToSign,
    PresignedPost,
    PresignedRequest,
    StorageError,
    StorageUnreachable,
    StoredObject,
    StoredPart,
    UploadNotFound,
)
from bigupload.storage.disposition import content_disposition
from bigupload.storage.keys import validate_key
from bigupload.storage.s3.presign import UploadPart, presign_upload_parts
from bigupload.storage.s3.presign_put import PutSigner

T = TypeVar("T")

_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    BotoConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)
_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken"}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
#: What CompleteMultipartUpload answers when it refuses the parts it was given. InvalidRequest
#: covers a missing per-part checksum on an upload that takes checksums, and an empty list.
_PARTS_CODES = {"EntityTooSmall", "InvalidPart", "InvalidPartOrder", "InvalidRequest"}
_READ_CHUNK = 1024 * 1024


def build_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    addressing_style: Literal["auto", "path", "virtual"] = "auto",
    max_pool_connections: int = 64,
) -> Any:
    """The process's S3 client. Credentials come from boto3's usual chain."""
    if addressing_style == "auto" and endpoint_url:
        addressing_style = "path"
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": addressing_style},
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=max_pool_connections,
    )
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _server_error(exc: StorageError) -> bool:
    """Whether ``exc`` is the store's 5xx answer (after botocore's retries)."""
    cause = exc.__cause__
    if not isinstance(cause, ClientError):
        return False
    status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return int(status) >= 500


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _b64(digest: bytes | None) -> str | None:
    if digest is None:
        return None
    if len(digest) != 32:
        raise ValueError("a SHA-256 digest is 32 bytes")
    return base64.b64encode(digest).decode()


def _hex_from_b64(value: str | None) -> str | None:
    if not value or "-" in value:
        return None  # composite (per-part) checksums say nothing of the whole object
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


@metered
class S3Storage:
    kind = "s3"

    def __init__(self, client: Any, bucket: str, *, conditional_writes: bool = True) -> None:
        self.client = client
        self.bucket = bucket
        #: PutObject URLs, botocore's byte for byte, at a fraction of botocore's cost.
        self._put_signer = PutSigner(client, bucket)
        #: Sign ``If-None-Match: *`` into upload URLs, so a replayed URL cannot replace an
        #: object once stored. Turn off only for stores without conditional writes.
        self.conditional_writes = conditional_writes

    # -- signing (local CPU) ---------------------------------------------------------------

    def _presign(self, operation: str, params: dict[str, Any], expires_in: int) -> str:
        try:
            url: str = self.client.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires_in
            )
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StorageUnreachable("no S3 credentials are configured") from exc
        return url

    def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        size: int,
        checksum_sha256: bytes | None,
        expires_in: int,
    ) -> PresignedRequest:
        validate_key(key)
        headers = {"Content-Type": content_type}
        checksum = None
        if checksum_sha256:
            checksum = base64.b64encode(checksum_sha256).decode()
            headers["x-amz-checksum-sha256"] = checksum
        if self.conditional_writes:
            headers["If-None-Match"] = "*"
        expires_at = clock.now().replace(microsecond=0) + timedelta(seconds=expires_in)
        try:
            url = self._put_signer.presign(
                key,
                content_type=content_type,
                size=size,
                checksum_sha256=checksum,
                if_none_match=self.conditional_writes,
                expires_in=expires_in,
            )
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StorageUnreachable("no S3 credentials are configured") from exc
        return PresignedRequest("PUT", url, expires_at, headers)

    def presign_post(
        self, key: str, *, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        """An S3 POST policy: the form stores 0 to ``max_size`` bytes of ``content_type`` at
        ``key`` (the policy binds the bucket, the key, the type and the length range).

        Unlike a PUT URL it cannot sign ``If-None-Match``: S3 lets a replayed form replace the
        object until the policy expires.
        """
        validate_key(key)
        if type(max_size) is not int or max_size < 0:
            raise ValueError(f"max_size is a number of bytes, not {max_size!r}")
        expires_at = clock.now().replace(microsecond=0) + timedelta(seconds=expires_in)
        try:
            form: dict[str, Any] = self.client.generate_presigned_post(
                Bucket=self.bucket,
                Key=key,
                Fields={"Content-Type": content_type},
                Conditions=[
                    {"Content-Type": content_type},
                    ["content-length-range", 0, max_size],
                ],
                ExpiresIn=expires_in,
            )
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StorageUnreachable("no S3 credentials are configured") from exc
        except AttributeError as exc:
            # botocore's POST signer does not check for credentials: it trips over None.
            signer = getattr(self.client, "_request_signer", None)
            if signer is not None and getattr(signer, "_credentials", None) is None:
                raise StorageUnreachable("no S3 credentials are configured") from exc
            raise
        fields = {str(name): str(value) for name, value in form["fields"].items()}
        return PresignedPost(url=str(form["url"]), fields=fields, expires_at=expires_at)

    def presign_get(
        self, key: str, *, filename: str, content_type: str, expires_in: int
    ) -> PresignedRequest:
        validate_key(key)
        params = {
            "Key": key,
            "ResponseContentDisposition": content_disposition(filename),
            "ResponseContentType": content_type,
        }
        expires_at = clock.now().replace(microsecond=0) + timedelta(seconds=expires_in)
        return PresignedRequest("GET", self._presign("get_object", params, expires_in), expires_at)

    # -- network calls (worker threads) ----------------------------------------------------

    async def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(partial(fn, **kwargs))
        except _UNREACHABLE as exc:
            raise StorageUnreachable(f"S3 is unreachable: {type(exc).__name__}") from exc
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise ObjectNotFound(kwargs.get("Key", "")) from exc
            if code == "NoSuchUpload":
                upload_id = kwargs.get("UploadId", "")
                raise UploadNotFound(f"no upload {upload_id!r} in progress") from exc
            if code in _AUTH_CODES:
                raise StorageUnreachable(f"S3 refused bigupload's credentials ({code})") from exc
            if code == "NoSuchBucket":
                raise StorageUnreachable(f"the bucket {self.bucket!r} does not exist") from exc
            raise StorageError(f"S3 error {code or 'unknown'}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 client error: {type(exc).__name__}") from exc

    async def stat(self, key: str, *, with_checksum: bool = False) -> StoredObject | None:
        validate_key(key)
        extra = {"ChecksumMode": "ENABLED"} if with_checksum else {}
        try:
            head = await self._call(self.client.head_object, Bucket=self.bucket, Key=key, **extra)
        except ObjectNotFound:
            return None
        etag = head.get("ETag")
        # An object joined from parts carries a checksum of its parts' checksums (some stores
        # drop the "-N" that says so): never the SHA-256 of its bytes.
        joined = head.get("ChecksumType") == "COMPOSITE" or "-" in (etag or "")
        return StoredObject(
            key=key,
            size=int(head["ContentLength"]),
            etag=etag,
            content_type=head.get("ContentType"),
            checksum_sha256=None if joined else _hex_from_b64(head.get("ChecksumSHA256")),
            last_modified=head.get("LastModified"),
        )

    async def sha256(self, key: str) -> bytes:
        validate_key(key)

        def digest() -> bytes:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            hasher = hashlib.sha256()
            try:
                for chunk in body.iter_chunks(_READ_CHUNK):
                    hasher.update(chunk)
            finally:
                body.close()
            return hasher.digest()

        try:
            return await self._call(digest)
        except ObjectNotFound:
            raise ObjectNotFound(key) from None

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        validate_key(key)
        if start < 0 or length < 0:
            raise ValueError("a range starts at 0 or later and holds 0 or more bytes")
        if length == 0:  # no Range header asks for nothing: answer it if the object is there
            if await self.stat(key) is None:
                raise ObjectNotFound(key)
            return b""

        def fetch() -> bytes:
            answer = self.client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
            )
            body = answer["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            if not answer.get("ContentRange"):  # a store that ignored the range sent it all
                data = data[start : start + length]
            return data[:length]

        try:
            return await self._call(fetch)
        except ObjectNotFound:
            raise ObjectNotFound(key) from None
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _error_code(cause) == "InvalidRange":
                return b""  # the range starts at or past the end of the object
            raise

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._call(self.client.delete_object, Bucket=self.bucket, Key=key)

    # -- multipart uploads -------------------------------------------------------------------

    async def create_multipart(
        self, key: str, *, content_type: str, checksum_sha256: bool = False
    ) -> str:
        validate_key(key)
        extra = {"ChecksumAlgorithm": "SHA256"} if checksum_sha256 else {}
        answer = await self._call(
            self.client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType=content_type,
            **extra,
        )
        upload_id: str = answer["UploadId"]
        return upload_id

    def presign_parts(
        self, key: str, upload_id: str, parts: Sequence[PartToSign], *, expires_in: int
    ) -> list[PresignedRequest]:
        """One PUT per part, in the order given.

        Each URL signs ``Content-Length``, so the body must be exactly the part's ``size``
        bytes (any HTTP client sets that header from the body); a part of ``size=None`` signs no
        length (S3 then takes up to 5 GiB); with ``checksum_sha256`` it also
        signs ``x-amz-checksum-sha256``, which is in ``headers`` and must be sent as is. An
        upload begun with ``checksum_sha256=True`` refuses a part without its checksum.
        """
        validate_key(key)
        to_sign = []
        for part in parts:
            number = operator.index(part.part_number)
            size = None if part.size is None else operator.index(part.size)
            if not 1 <= number <= MAX_PARTS:
                raise ValueError(f"part numbers run from 1 to {MAX_PARTS}: {number}")
            if size is not None and not 0 <= size <= MAX_PART_SIZE:
                raise ValueError(f"a part holds 0 to {MAX_PART_SIZE} bytes: {size}")
            to_sign.append(UploadPart(number, size, _b64(part.checksum_sha256)))
        expires_at = clock.now().replace(microsecond=0) + timedelta(seconds=expires_in)
        try:
            urls = presign_upload_parts(
                self.client,
                bucket=self.bucket,
                key=key,
                upload_id=upload_id,
                parts=to_sign,
                expires_in=expires_in,
            )
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StorageUnreachable("no S3 credentials are configured") from exc
        return [
            PresignedRequest(
                "PUT",
                url,
                expires_at,
                {"x-amz-checksum-sha256": part.checksum_sha256} if part.checksum_sha256 else {},
            )
            for part, url in zip(to_sign, urls, strict=True)
        ]

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        validate_key(key)
        parts: list[StoredPart] = []
        marker: dict[str, int] = {}
        while True:  # 1,000 parts per page, up to 10,000 parts
            page = await self._call(
                self.client.list_parts,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                **marker,
            )
            parts.extend(
                StoredPart(
                    part_number=int(part["PartNumber"]),
                    size=int(part["Size"]),
                    etag=_quoted(part["ETag"]),
                    checksum_sha256=part.get("ChecksumSHA256") or None,
                    last_modified=part.get("LastModified"),
                )
                for part in page.get("Parts", [])
            )
            if not page.get("IsTruncated"):
                break
            following = int(page.get("NextPartNumberMarker") or 0)
            if following <= marker.get("PartNumberMarker", 0):
                raise StorageError("S3 ListParts answered a truncated page without a next marker")
            marker = {"PartNumberMarker": following}
        parts.sort(key=lambda part: part.part_number)
        return parts

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> StoredObject:
        validate_key(key)
        if not parts:  # as S3 answers it (moto answers MalformedXML)
            raise PartsRejected("InvalidRequest", "You must specify at least one part")
        listed: list[dict[str, Any]] = []
        for part in parts:
            entry: dict[str, Any] = {"PartNumber": part.part_number, "ETag": part.etag}
            if part.checksum_sha256:
                entry["ChecksumSHA256"] = part.checksum_sha256
            listed.append(entry)
        try:
            await self._call(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
            )
        except UploadNotFound:
            raise
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError):
                error = cause.response.get("Error", {})
                code = str(error.get("Code", ""))
                if code in _PARTS_CODES:
                    raise PartsRejected(code, str(error.get("Message", code))) from cause
            if _server_error(exc):
                await self._raise_if_not_in_progress(key, upload_id, exc)
            raise
        head = await self._call(self.client.head_object, Bucket=self.bucket, Key=key)
        return StoredObject(
            key=key,
            size=int(head["ContentLength"]),
            etag=head.get("ETag"),
            content_type=head.get("ContentType"),
            checksum_sha256=None,  # S3's composite checksum is not the object's SHA-256
            last_modified=head.get("LastModified"),
        )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        validate_key(key)
        try:
            await self._call(
                self.client.abort_multipart_upload, Bucket=self.bucket, Key=key, UploadId=upload_id
            )
        except UploadNotFound:
            raise
        except StorageError as exc:
            if _server_error(exc):
                await self._raise_if_not_in_progress(key, upload_id, exc)
            raise

    async def _raise_if_not_in_progress(
        self, key: str, upload_id: str, failure: StorageError
    ) -> None:
        """After a 5xx answer: raise UploadNotFound if the upload is not (or no longer) in
        progress. moto answers 500 to CompleteMultipartUpload and UploadPart for an upload that
        was aborted or never begun; on S3 a failed complete may have completed it."""
        try:
            await self._call(
                self.client.list_parts, Bucket=self.bucket, Key=key, UploadId=upload_id, MaxParts=1
            )
        except UploadNotFound as exc:
            raise exc from failure
        except StorageError:
            pass

    async def list_multipart_uploads(self, prefix: str = "") -> list[MultipartUpload]:
        uploads: list[MultipartUpload] = []
        markers: dict[str, str] = {}
        while True:  # 1,000 uploads per page
            page = await self._call(
                self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=prefix, **markers
            )
            uploads.extend(
                MultipartUpload(
                    key=upload["Key"],
                    upload_id=upload["UploadId"],
                    initiated=upload.get("Initiated"),
                )
                for upload in page.get("Uploads", [])
            )
            if not page.get("IsTruncated"):
                break
            following = {
                "KeyMarker": page.get("NextKeyMarker") or "",
                "UploadIdMarker": page.get("NextUploadIdMarker") or "",
            }
            if following == markers or not following["KeyMarker"]:
                raise StorageError("S3 ListMultipartUploads answered no next marker")
            markers = following
        # S3 lists by key, then by initiation within a key: oldest first, whatever the key.
        oldest = datetime.min.replace(tzinfo=UTC)
        uploads.sort(key=lambda upload: upload.initiated or oldest)
        return uploads

    async def check(self) -> None:
        try:
            await self._call(self.client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound as exc:
            raise StorageUnreachable(f"the bucket {self.bucket!r} does not exist") from exc

    async def close(self) -> None:
        self.client.close()
