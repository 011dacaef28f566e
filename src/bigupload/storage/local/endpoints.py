"""The HTTP face of the local store: PUT, POST and GET on the URLs that :class:`LocalStorage`
signs, with their CORS.

A PUT whose query names ``uploadId`` or ``partNumber`` uploads one part of a multipart upload,
as S3's UploadPart does; any other PUT stores a whole object. ``POST /store`` takes a browser
form upload as S3 takes a POST policy's: ``multipart/form-data`` with the fields first (``key``,
``Content-Type``, ``token``; S3's other fields are ignored) and the ``file`` field last (any
field after it is ignored, as S3 does), answered 204 with ``ETag`` and ``Location``
(``success_action_status`` 200 or 201 as S3 answers them).

CORS is answered here, not by the service's middleware, so the store's URLs work from any page
that ``settings.store_cors_origins`` allows: preflights (``OPTIONS``) are answered by the routes
below, and every other answer of these routes, errors included, carries
``Access-Control-Allow-Origin`` and exposes the headers an uploader reads (``ETag``...).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote
from xml.sax.saxutils import escape

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from bigupload.errors import AppError, InsufficientStorage, NotFound, StorageUnavailable
from bigupload.json_body import ApiRoute
from bigupload.storage.base import StorageFull, StorageUnreachable, UploadNotFound
from bigupload.storage.disposition import content_disposition
from bigupload.storage.keys import InvalidKey
from bigupload.storage.local import events
from bigupload.storage.local.formdata import (
    FieldsTooLarge,
    FormReader,
    MalformedForm,
    boundary_of,
)
from bigupload.storage.local.spool import UploadRejected
from bigupload.storage.local.store import LocalStorage
from bigupload.storage.local.tokens import TokenExpired, TokenInvalid

#: What a browser may do cross-origin on the store's URLs, and read from its answers.
CORS_METHODS = "GET, HEAD, PUT, POST"
CORS_EXPOSED = "ETag, Location, x-amz-checksum-sha256, Content-Length, Content-Disposition"
CORS_MAX_AGE = "3000"
#: The most bytes of a form's fields (and their part headers) before its file, as S3 allows.
MAX_FORM_FIELDS = 20 * 1024


def _allowed_origin(scope: Scope, origin: str) -> str | None:
    """What ``Access-Control-Allow-Origin`` answers ``origin``: ``*``, the origin, or nothing."""
    settings = getattr(scope["app"].state, "settings", None)
    origins: tuple[str, ...] = getattr(settings, "store_cors_origins", ("*",))
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def _wildcard(scope: Scope) -> bool:
    settings = getattr(scope["app"].state, "settings", None)
    return "*" in getattr(settings, "store_cors_origins", ("*",))


class _StoreRoute(ApiRoute):
    """A route whose answers (errors included) carry the store's CORS headers, and
    ``X-Content-Type-Options: nosniff``: a browser renders what the store serves as the type
    it was uploaded with, never as what its bytes look like (an uploaded "image" that is HTML)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().handle(scope, receive, send)
            return
        preflight = scope["method"] == "OPTIONS"  # preflights answer their own CORS
        origin = None if preflight else Headers(scope=scope).get("origin")
        allowed = _allowed_origin(scope, origin) if origin is not None else None
        vary = not preflight and not _wildcard(scope)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if allowed is not None:
                    headers["Access-Control-Allow-Origin"] = allowed
                    headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
                if vary:
                    headers.add_vary_header("Origin")
            await send(message)

        await super().handle(scope, receive, send_with_cors)


router = APIRouter(prefix="/store", include_in_schema=False, route_class=_StoreRoute)

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
            content_md5=request.headers.get("content-md5"),
        )
    except UploadRejected as exc:
        raise AppError(exc.message, code=exc.code, status=exc.status) from None
    except StorageUnreachable as exc:
        raise StorageUnavailable(str(exc)) from None
    except StorageFull as exc:
        raise InsufficientStorage(str(exc)) from exc
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
        part = await store.receive_part(
            grant,
            request.stream(),
            content_length=_length(request),
            content_md5=request.headers.get("content-md5"),
        )
    except UploadRejected as exc:
        raise AppError(exc.message, code=exc.code, status=exc.status) from None
    except UploadNotFound:
        raise NotFound(
            "no such multipart upload: never begun, completed or aborted", code="upload_not_found"
        ) from None
    except StorageUnreachable as exc:
        raise StorageUnavailable(str(exc)) from None
    except StorageFull as exc:
        raise InsufficientStorage(str(exc)) from exc
    headers = {"ETag": part.etag}
    if part.checksum_sha256:
        headers["x-amz-checksum-sha256"] = part.checksum_sha256
    return Response(status_code=200, headers=headers)


@router.api_route("/{key:path}", methods=["GET", "HEAD"])
async def get_object(key: str, token: Token, request: Request) -> Response:
    store = _store(request)
    try:
        grant = store.signer.verify_get(token, key)
    except (TokenExpired, TokenInvalid) as exc:
        raise _denied(exc) from None
    try:
        path = store.object_path(key)
        stored = await store.stat(key)
    except InvalidKey:  # a hostile key, or a path the store refuses (a planted link)
        raise NotFound("no such object") from None
    if stored is None:
        raise NotFound("no such object")
    headers = {"Content-Disposition": content_disposition(grant.filename)}
    if stored.etag:
        headers["ETag"] = stored.etag
    return FileResponse(path, media_type=grant.content_type, headers=headers)


@router.post("")
async def post_object(request: Request) -> Response:
    """A browser form upload (S3's POST policy): the fields, then the file, streamed to disk."""
    store = _store(request)
    try:
        reader = FormReader(request.stream(), boundary_of(request.headers.get("content-type")))
        fields, has_file = await _form_fields(reader)
    except FieldsTooLarge as exc:
        raise AppError(str(exc), code="form_fields_too_large", status=400) from None
    except MalformedForm as exc:
        raise AppError(str(exc), code="malformed_form", status=400) from None
    key, token = fields.get("key"), fields.get("token")
    if key is None:
        raise AppError(
            "the form has no key field", code="form_field_missing", details={"field": "key"}
        )
    try:
        grant = store.signer.verify_post(token or "", key)
    except (TokenExpired, TokenInvalid) as exc:
        raise _denied(exc) from None
    if not has_file:
        raise AppError(
            "the form has no file field (it must come after the other fields)",
            code="file_missing",
        )
    try:
        stored = await store.receive_form(
            grant, reader.stream(), content_type=fields.get("content-type")
        )
    except MalformedForm as exc:  # the body ended inside the file
        raise AppError(str(exc), code="malformed_form", status=400) from None
    except UploadRejected as exc:
        raise AppError(exc.message, code=exc.code, status=exc.status) from None
    except StorageUnreachable as exc:
        raise StorageUnavailable(str(exc)) from None
    except StorageFull as exc:
        raise InsufficientStorage(str(exc)) from exc
    except InvalidKey:
        raise NotFound("no such object") from None
    store.emit_created(stored, events.POST)  # in the background, as S3 sends ObjectCreated:Post
    location = f"{store.public_url}/store/{quote(key, safe='/')}"
    headers = {"ETag": stored.etag or "", "Location": location}
    status = fields.get("success_action_status")
    if status == "201":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<PostResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Location>{escape(location)}</Location><Bucket>{escape(store.bucket)}</Bucket>"
            f"<Key>{escape(key)}</Key><ETag>{escape(stored.etag or '')}</ETag></PostResponse>"
        )
        return Response(body, status_code=201, headers=headers, media_type="application/xml")
    return Response(status_code=200 if status == "200" else 204, headers=headers)


async def _form_fields(reader: FormReader) -> tuple[dict[str, str], bool]:
    """The form's fields before its ``file`` (names lowercased), and whether a file follows."""
    fields: dict[str, str] = {}
    budget = MAX_FORM_FIELDS
    while (part := await reader.next_part()) is not None:
        budget -= part.header_bytes
        name = part.name.lower()
        if name == "file":
            return fields, True
        value = await reader.read_value(max(budget, 0))
        budget -= len(value)
        if budget < 0:
            raise FieldsTooLarge(f"the form's fields exceed {MAX_FORM_FIELDS} bytes")
        try:
            fields[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedForm(f"the field {part.name!r} is not UTF-8") from None
    return fields, False


@router.options("")
@router.options("/{key:path}")
async def preflight(request: Request) -> Response:
    """A CORS preflight: allowed for the configured origins and the store's methods."""
    origin = request.headers.get("origin")
    method = request.headers.get("access-control-request-method")
    if origin is None or method is None:  # not a preflight: say what the URLs take
        return Response(status_code=204, headers={"Allow": f"{CORS_METHODS}, OPTIONS"})
    allowed = _allowed_origin(request.scope, origin)
    vary = {} if _wildcard(request.scope) else {"Vary": "Origin"}
    if allowed is None or method not in CORS_METHODS.split(", "):
        raise AppError(
            "this CORS request is not allowed",
            code="cors_forbidden",
            status=403,
            headers=vary or None,
        )
    headers = {
        "Access-Control-Allow-Origin": allowed,
        "Access-Control-Allow-Methods": CORS_METHODS,
        "Access-Control-Max-Age": CORS_MAX_AGE,
        **vary,
    }
    requested = request.headers.get("access-control-request-headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    return Response(status_code=204, headers=headers)
