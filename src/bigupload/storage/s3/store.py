"""The S3 adapter: any S3-compatible store (AWS S3, MinIO, Ceph RGW, R2, ...) through boto3.

One client per process, built by :func:`build_client` and injected. Signing is local CPU work
and runs inline; every network call runs in a worker thread, never on the event loop.

Upload URLs sign ``Content-Type``, ``Content-Length``, the checksum when declared, and
``If-None-Match: *``: the store refuses another body, and refuses a replay once an object exists.

Permissions the credentials need on the bucket (IAM actions): ``s3:PutObject``,
``s3:GetObject``, ``s3:DeleteObject`` and ``s3:ListBucket`` (a HEAD of a missing key answers 404
rather than 403 only with ListBucket). Objects live under ``uploads/<owner>/<yyyy>/<mm>/<uuid>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from datetime import timedelta
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
from bigupload.storage.base import (
    ObjectNotFound,
    PresignedRequest,
    StorageError,
    StorageUnreachable,
    StoredObject,
)
from bigupload.storage.disposition import content_disposition
from bigupload.storage.keys import validate_key

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


def _hex_from_b64(value: str | None) -> str | None:
    if not value or "-" in value:
        return None  # composite (per-part) checksums say nothing of the whole object
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


class S3Storage:
    kind = "s3"

    def __init__(self, client: Any, bucket: str, *, conditional_writes: bool = True) -> None:
        self.client = client
        self.bucket = bucket
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
        params: dict[str, Any] = {"Key": key, "ContentType": content_type, "ContentLength": size}
        headers = {"Content-Type": content_type}
        if checksum_sha256:
            checksum = base64.b64encode(checksum_sha256).decode()
            params["ChecksumSHA256"] = checksum
            headers["x-amz-checksum-sha256"] = checksum
        if self.conditional_writes:
            params["IfNoneMatch"] = "*"
            headers["If-None-Match"] = "*"
        expires_at = clock.now().replace(microsecond=0) + timedelta(seconds=expires_in)
        url = self._presign("put_object", params, expires_in)
        return PresignedRequest("PUT", url, expires_at, headers)

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
        return StoredObject(
            key=key,
            size=int(head["ContentLength"]),
            etag=head.get("ETag"),
            content_type=head.get("ContentType"),
            checksum_sha256=_hex_from_b64(head.get("ChecksumSHA256")),
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

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._call(self.client.delete_object, Bucket=self.bucket, Key=key)

    async def check(self) -> None:
        try:
            await self._call(self.client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound as exc:
            raise StorageUnreachable(f"the bucket {self.bucket!r} does not exist") from exc

    async def close(self) -> None:
        self.client.close()
