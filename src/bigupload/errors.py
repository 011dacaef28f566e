"""One error type with stable codes, and the handlers that turn errors into one JSON shape.

Every error answer is ``{"error": {"code": ..., "message": ..., "details": ...}}``. Codes are
stable: clients may switch on them. Unexpected exceptions become ``internal_error`` with no
stack trace, no credential and no signed URL in the answer; they are logged with the request id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from bigupload import disconnects

log = logging.getLogger("bigupload.errors")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable: clients may switch on it.", examples=["not_found"])
    message: str = Field(description="For people; may change.")
    details: Any = Field(default=None, description="Structured context, when there is any.")


class ErrorBody(BaseModel):
    """The shape of every error answer."""

    error: ErrorDetail


#: The answers every authenticated API route may give besides its own.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No API key, or an invalid or revoked one."},
    403: {
        "model": ErrorBody,
        "description": "`csrf_failed`: the session cookie without its `X-CSRF-Token`.",
    },
    413: {"model": ErrorBody, "description": "Too large (a body over 1 MiB, or a file)."},
    422: {"model": ErrorBody, "description": "Invalid input; `details` lists the fields."},
    429: {"model": ErrorBody, "description": "Rate limited; see `Retry-After`."},
    500: {"model": ErrorBody, "description": "Unexpected; the message names the request id."},
    502: {"model": ErrorBody, "description": "`storage_error`: the store answered an error."},
    503: {
        "model": ErrorBody,
        "description": "The store (`storage_unavailable`) or the registry "
        "(`database_unavailable`: locked, read-only or unreachable) is unavailable; nothing "
        "changed; see `Retry-After`.",
    },
    507: {
        "model": ErrorBody,
        "description": "`insufficient_storage`: no room left on a disk; nothing changed; see "
        "`Retry-After`.",
    },
}

#: The answer of every route that names a file by id.
FILE_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ErrorBody,
        "description": "`file_not_found`: no such file, or another owner's.",
    },
}


class AppError(Exception):
    """An error a client can act on; ``code`` is stable, ``status`` is the HTTP status."""

    status: int = 400
    code: str = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details
        if headers is not None:
            self.headers = headers


class Unauthenticated(AppError):
    status = 401
    code = "unauthenticated"

    def __init__(self, message: str = "a valid API key is required", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kw)


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "file_too_large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "content_type_not_allowed"


class InvalidRequest(AppError):
    status = 422
    code = "validation_error"


class StorageUnavailable(AppError):
    status = 503
    code = "storage_unavailable"

    def __init__(
        self, message: str = "the storage service is unreachable; try again later", **kw: Any
    ) -> None:
        kw.setdefault("headers", {"Retry-After": "5"})
        super().__init__(message, **kw)


class InsufficientStorage(AppError):
    """The store is full: nothing was stored and nothing changed; send the same request again
    once space is freed."""

    status = 507
    code = "insufficient_storage"

    def __init__(
        self, message: str = "the store is full; nothing was stored, try again later", **kw: Any
    ) -> None:
        kw.setdefault("headers", {"Retry-After": "60"})
        super().__init__(message, **kw)


#: The answer of the routes that write to the store when it is full.
STORE_FULL_RESPONSE: dict[int | str, dict[str, Any]] = {
    507: {
        "model": ErrorBody,
        "description": "`insufficient_storage`: the store is full; nothing changed. "
        "See `Retry-After`.",
    }
}


class StorageFailure(AppError):
    status = 502
    code = "storage_error"


def object_not_found() -> NotFound:
    """The store has no object it will serve under the file's key (none, or the local store
    refuses its path: a symbolic link planted in it)."""
    return NotFound(
        "the store holds no object it will serve for this file", code="object_not_found"
    )


@contextmanager
def store_errors(doing: str) -> Iterator[None]:
    """Report a store failure while ``doing`` (e.g. "list the parts") in the API's terms:
    unreachable is 503, full is 507, no object 404, anything else 502."""
    from bigupload.storage.base import (
        ObjectNotFound,
        StorageError,
        StorageFull,
        StorageUnreachable,
    )

    try:
        yield
    except StorageUnreachable as exc:
        raise StorageUnavailable() from exc
    except StorageFull as exc:
        raise InsufficientStorage() from exc
    except ObjectNotFound as exc:
        raise object_not_found() from exc
    except StorageError as exc:
        raise StorageFailure(f"the store could not {doing}: {exc}") from exc


#: Paths whose error answers also carry ``message`` at the top: Uppy's client shows only that.
TOP_LEVEL_MESSAGE_PREFIX = "/s3/"


def error_body(code: str, message: str, details: Any = None, *, path: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": details}}
    if path.startswith(TOP_LEVEL_MESSAGE_PREFIX):
        body["message"] = message
    return body


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


#: Refusals for the caller's credentials besides every 401.
_AUTH_CODES = frozenset({"csrf_failed", "sns_signature_invalid", "sns_topic_not_allowed"})


def _count(exc: AppError, path: str) -> None:
    from bigupload.metrics import catalog

    if exc.status == 401 or exc.code in _AUTH_CODES:
        catalog.AUTH_FAILURES.labels(exc.code).inc()
    elif exc.code == "rate_limited":
        catalog.RATE_LIMITED.labels("sign_in" if path == "/api/v1/session" else "owner").inc()
    elif exc.code == "storage_unavailable":
        catalog.STORE_UNREACHABLE_ANSWERS.inc()


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    _count(exc, request.url.path)
    if exc.status >= 500:
        log.error(
            "%s %s failed: %s (%s) request_id=%s",
            request.method,
            request.url.path,
            exc.code,
            exc.__cause__ or exc.message,
            _request_id(request),
        )
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details, path=request.url.path),
        status_code=exc.status,
        headers=exc.headers,
    )


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        details.append({"field": _location(tuple(error.get("loc", ()))), "message": message})
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
    return JSONResponse(
        error_body(
            "validation_error", f"invalid request: {summary}", details, path=request.url.path
        ),
        status_code=422,
    )


#: Codes of the errors the framework raises itself; any other status is ``http_error``.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    401: "unauthenticated",
    403: "forbidden",
    413: "payload_too_large",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return JSONResponse(
        error_body(code, message, path=request.url.path),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception(
        "%s %s crashed request_id=%s", request.method, request.url.path, _request_id(request)
    )
    return JSONResponse(
        error_body(
            "internal_error",
            f"an unexpected error occurred (request id {_request_id(request)})",
            path=request.url.path,
        ),
        status_code=500,
        # Sent from outside the request-log middleware, so the id header is added here.
        headers={"X-Request-ID": _request_id(request)},
    )


def install_error_handlers(app: FastAPI) -> None:
    from bigupload.db_errors import install_database_error_handlers

    disconnects.install(app)  # a client that left is not an error: no traceback, no 500
    app.add_exception_handler(AppError, _app_error)
    install_database_error_handlers(app)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
