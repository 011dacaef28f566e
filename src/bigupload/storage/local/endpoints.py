"""The HTTP face of the local store: PUT and GET on the URLs that :class:`LocalStorage` signs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from bigupload.errors import AppError, NotFound, StorageUnavailable
from bigupload.storage.base import StorageUnreachable
from bigupload.storage.disposition import content_disposition
from bigupload.storage.keys import InvalidKey
from bigupload.storage.local.store import LocalStorage, UploadRejected
from bigupload.storage.local.tokens import TokenExpired, TokenInvalid

router = APIRouter(prefix="/store", include_in_schema=False)

Token = Annotated[str, Query(min_length=1, max_length=8192)]


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


@router.put("/{key:path}")
async def put_object(key: str, token: Token, request: Request) -> Response:
    store = _store(request)
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
    checksum = request.headers.get("x-amz-checksum-sha256")
    if checksum != grant.checksum_sha256:
        raise AppError(
            "x-amz-checksum-sha256 must be sent exactly as signed into the URL",
            code="checksum_header_mismatch",
            status=403,
        )
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
    return Response(status_code=200, headers={"ETag": stored.etag or ""})


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
