"""The HTTP face of the local store: PUT and GET on the URLs that :class:`LocalStorage` signs.

A PUT whose query names ``uploadId`` or ``partNumber`` uploads one part of a multipart upload,
as S3's UploadPart does; any other PUT stores a whole object.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from bigupload.errors import AppError, NotFound, StorageUnavailable
from bigupload.storage.base import StorageUnreachable, UploadNotFound
from bigupload.storage.disposition import content_disposition
from bigupload.storage.keys import InvalidKey
from bigupload.storage.local.store import LocalStorage, UploadRejected
from bigupload.storage.local.tokens import TokenExpired, TokenInvalid

router = APIRouter(prefix="/store", include_in_schema=False)

Token = Annotated[str, Query(min_length=1, max_length=8192)]
# Compared as sent with what the token names: any other value is a URL we did not sign.
UploadId = Annotated[str | None, Query(alias="uploadId")]
PartNumber = Annotated[str | None, Query(alias="partNumber")]


def _store(request: Request) -> LocalStorage:
    storage = request.app.state.storage
    if not isinstance(storage, LocalStorage):
        raise NotFound("no local store is configured")
    return storage


def _denied(exc: Exception) -> AppError:
    if isinstance(exc, TokenExpired):
        return AppError("Request has expired", code="url_expired", status=403)
    return AppError("the URL's signature is not valid", code="url_invalid", status=403)


def _length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise AppError("Content-Length is not a number", code="bad_content_length", status=400)
    return int(raw)


def _checksum_header(request: Request, signed: str | None) -> None:
    if request.headers.get("x-amz-checksum-sha256") != signed:
        raise AppError(
            "x-amz-checksum-sha256 must be sent exactly as signed into the URL",
            code="checksum_header_mismatch",
            status=403,
        )


@router.put("/{key:path}")
async def put_object(
    key: str,
    token: Token,
    request: Request,
    upload_id: UploadId = None,
    part_number: PartNumber = None,
) -> Response:
    store = _store(request)
    if upload_id is not None or part_number is not None:
        return await _put_part(store, key, token, upload_id or "", part_number or "", request)
    try:
        grant = store.signer.verify_put(token, key)
    except (TokenExpired, TokenInvalid) as exc:
        raise _denied(exc) from None
    if request.headers.get("if-none-match") != "*":
        raise AppError(
            "If-None-Match: * must be sent, as signed into the URL",
            code="precondition_header_missing",
            status=403,
        )
    _checksum_header(request, grant.checksum_sha256)
    try:
        stored = await store.receive(
            grant,
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=_length(request),
        )
    except UploadRejected as exc:
        raise AppError(exc.message, code=exc.code, status=exc.status) from None
    except StorageUnreachable as exc:
        raise StorageUnavailable(str(exc)) from None
    except InvalidKey:
        raise NotFound("no such object") from None
    store.emit_created(stored)  # in the background, as S3 sends ObjectCreated:Put
    return Response(status_code=200, headers={"ETag": stored.etag or ""})


async def _put_part(
    store: LocalStorage, key: str, token: str, upload_id: str, part_number: str, request: Request
) -> Response:
    """UploadPart: no Content-Type nor If-None-Match; a part sent again replaces the earlier."""
    try:
        grant = store.signer.verify_part(token, key, upload_id, part_number)
    except (TokenExpired, TokenInvalid) as exc:
        raise _denied(exc) from None
    _checksum_header(request, grant.checksum_sha256)
    try:
        part = await store.receive_part(grant, request.stream(), content_length=_length(request))
    except UploadRejected as exc:
        raise AppError(exc.message, code=exc.code, status=exc.status) from None
    except UploadNotFound:
        raise NotFound(
            "no such multipart upload: never begun, completed or aborted", code="upload_not_found"
        ) from None
    except StorageUnreachable as exc:
        raise StorageUnavailable(str(exc)) from None
    headers = {"ETag": part.etag}
    if part.checksum_sha256:
        headers["x-amz-checksum-sha256"] = part.checksum_sha256
    return Response(status_code=200, headers=headers)


@router.api_route("/{key:path}", methods=["GET", "HEAD"])
async def get_object(key: str, token: Token, request: Request) -> Response:
    store = _store(request)
    try:
        grant = store.signer.verify_get(token, key)
        path = store.object_path(key)
    except (TokenExpired, TokenInvalid) as exc:
        raise _denied(exc) from None
    except InvalidKey:
        raise NotFound("no such object") from None
    stored = await store.stat(key)
    if stored is None:
        raise NotFound("no such object")
    headers = {"Content-Disposition": content_disposition(grant.filename)}
    if stored.etag:
        headers["ETag"] = stored.etag
    return FileResponse(path, media_type=grant.content_type, headers=headers)
