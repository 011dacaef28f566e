"""The errors the client raises: one base type carrying the server's status, code and message.

Codes are the server's stable codes (``file_not_found``, ``upload_incomplete``, ...) when the
server gave one; errors made by the client itself have codes of their own (``connection_error``,
``upload_in_progress``, ``file_changed``, ``integrity_error``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx


class BigUploadError(Exception):
    """A request or transfer failed; ``status`` is the HTTP status, when there was an answer."""

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.details = details

    def __str__(self) -> str:
        return self.message


class AuthError(BigUploadError):
    """No API key, or one the server refuses (401), or a request it forbids (403)."""

    default_code = "unauthenticated"


class NotFoundError(BigUploadError):
    """No such file (or not one of yours)."""

    default_code = "not_found"


class ConflictError(BigUploadError):
    """The file is not in a state that allows the request (aborted, failed, incomplete, ...)."""

    default_code = "conflict"


class InvalidRequestError(BigUploadError):
    """The server refused the request as invalid (400, 413, 415, 422)."""

    default_code = "validation_error"


class RateLimitedError(BigUploadError):
    """Still rate limited (429) after every retry."""

    default_code = "rate_limited"


class ServerError(BigUploadError):
    """The server or the store failed (5xx) on every retry."""

    default_code = "server_error"


class TransferError(BigUploadError):
    """The network failed on every retry, or the store refused the bytes."""

    default_code = "connection_error"


class AmbiguousIdError(InvalidRequestError):
    """A short id that begins more than one of your files' ids; ``candidates`` holds them."""

    default_code = "ambiguous_id"

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message, code=self.default_code, details={"candidates": candidates})
        self.candidates = candidates


class UploadInProgressError(BigUploadError):
    """Another process is uploading the same file to the same server right now."""

    default_code = "upload_in_progress"


class FileChangedError(BigUploadError):
    """The local file changed while it was being uploaded."""

    default_code = "file_changed"


class IntegrityError(BigUploadError):
    """What was received differs from what the server recorded (size or SHA-256)."""

    default_code = "integrity_error"


_BY_STATUS: dict[int, type[BigUploadError]] = {
    400: InvalidRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitedError,
}


def api_error(response: httpx.Response) -> BigUploadError:
    """The error a bigupload API answer stands for (``{"error": {code, message, details}}``)."""
    status = response.status_code
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else BigUploadError)
    code, message, details = None, None, None
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        details = error.get("details")
    if not message:
        message = f"the server answered {status} {response.reason_phrase}".rstrip()
    return kind(message, status=status, code=code, details=details)


def store_error(response: httpx.Response) -> tuple[str, str]:
    """The ``(code, message)`` of a store's refusal: S3's XML or bigupload's local-store JSON."""
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    text = _text(response)
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return (
        code.group(1) if code else "",
        message.group(1) if message else (text[:200] if "<" not in text else ""),
    )


#: What S3 and our local store answer when a part's bytes differ from the signed checksum.
_CHECKSUM_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch", "checksum_mismatch"})


def is_expired(status: int, code: str, message: str) -> bool:
    """A presigned URL whose time is up: sign it again."""
    if status != 403:
        return False
    return code == "url_expired" or (code == "AccessDenied" and "expired" in message.lower())


def is_checksum_refusal(status: int, code: str, message: str) -> bool:
    """The store refused the bytes for their checksum: read, hash, sign and send again."""
    if status != 400:
        return False
    return code in _CHECKSUM_CODES or (code == "InvalidRequest" and "checksum" in message.lower())


def _json(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _text(response: httpx.Response) -> str:
    try:
        return response.content.decode("utf-8", "replace")
    except httpx.ResponseNotRead:
        return ""
