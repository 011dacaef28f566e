"""The bigupload REST API, one method per route, each with retries and typed errors."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bigupload.client import retry
from bigupload.client.errors import BigUploadError, TransferError, api_error
from bigupload.client.models import (
    DownloadLink,
    FilePage,
    RemoteFile,
    SignedPart,
    StoredPart,
    signed_parts_from_json,
    stored_parts_from_json,
)

API_PREFIX = "/api/v1"


def normalize_base_url(url: str) -> str:
    """``http://host:8000/`` or ``http://host:8000/api/v1`` as ``http://host:8000``."""
    url = url.strip().rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8000")
    return url


def transport_error(exc: httpx.TransportError, where: str) -> TransferError:
    """One line about a network failure."""
    kind = type(exc).__name__
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else kind
    if isinstance(exc, httpx.TimeoutException):
        message = f"{where} did not answer in time ({kind})"
    elif isinstance(exc, httpx.ConnectError):
        message = f"cannot connect to {where}: {reason}"
    else:
        message = f"the connection to {where} failed: {reason}"
    error = TransferError(message)
    error.__cause__ = exc
    return error


def _id(file_id: str) -> str:
    """A file id as one path segment, whatever the caller typed."""
    return quote(file_id.strip(), safe="")


def http_date(value: str | None) -> datetime | None:
    """An HTTP date header as an aware time; ``None`` if absent or malformed."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def retryable(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


class Api:
    def __init__(
        self, http: httpx.Client, base_url: str, api_key: str, policy: retry.RetryPolicy
    ) -> None:
        self.http = http
        self.base_url = base_url
        self.policy = policy
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._where = urlsplit(base_url).netloc

    def with_policy(self, policy: retry.RetryPolicy) -> Api:
        """The same API under another retry policy (e.g. one whose waits end when a transfer
        stops)."""
        other = copy.copy(self)
        other.policy = policy
        return other

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The answer to a 2xx, retried on network failures, 5xx and 429; any other answer
        is raised as its :class:`BigUploadError`."""
        url = self.base_url + API_PREFIX + path
        sent = {**self._auth, **headers} if headers else self._auth

        def attempt() -> httpx.Response:
            try:
                response = self.http.request(method, url, json=json, params=params, headers=sent)
            except httpx.TransportError as exc:
                raise retry.Retry(transport_error(exc, f"the server at {self._where}")) from exc
            if response.is_success:
                return response
            error = api_error(response)
            if retryable(response):
                wait = retry.retry_after(response.headers.get("retry-after"))
                raise retry.Retry(error, retry_after=wait)
            raise error

        return retry.call(self.policy, attempt, f"{method} {path}")

    # -- uploads ---------------------------------------------------------------------------

    def create_upload(
        self, body: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Begin an upload. With ``idempotency_key``, repeating the call (as the retries do, or
        a later run that never saw the answer) answers the upload the first call began."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        data: dict[str, Any] = self.request("POST", "/uploads", json=body, headers=headers).json()
        return data

    def sign_parts(
        self, file_id: str, numbers: Sequence[int], checksums: dict[int, str] | None = None
    ) -> tuple[list[SignedPart], datetime | None]:
        """URLs for parts ``numbers`` (each with its base64 SHA-256, if given), and the time
        by the server's clock (its ``Date``), to judge their expiry by."""
        body: dict[str, Any] = {"part_numbers": list(numbers)}
        if checksums:
            body["checksums_sha256"] = {str(n): digest for n, digest in checksums.items()}
        response = self.request("POST", f"/uploads/{_id(file_id)}/parts", json=body)
        parts = signed_parts_from_json(response.json())
        if sorted(p.part_number for p in parts) != sorted(numbers):
            raise BigUploadError(
                "the server signed other parts than the ones asked for", code="protocol_error"
            )
        return parts, http_date(response.headers.get("date"))

    def stored_parts(self, file_id: str) -> tuple[dict[str, Any], list[StoredPart]]:
        answer: dict[str, Any] = self.request("GET", f"/uploads/{_id(file_id)}/parts").json()
        return answer, stored_parts_from_json(answer)

    def complete(self, file_id: str, parts: Iterable[tuple[int, str]] | None = None) -> RemoteFile:
        body = None
        if parts is not None:
            body = {"parts": [{"part_number": n, "etag": etag} for n, etag in sorted(parts)]}
        answer = self.request("POST", f"/uploads/{_id(file_id)}/complete", json=body)
        return RemoteFile.from_json(answer.json())

    def abort(self, file_id: str) -> RemoteFile:
        return RemoteFile.from_json(self.request("DELETE", f"/uploads/{_id(file_id)}").json())

    # -- files -----------------------------------------------------------------------------

    def file(self, file_id: str) -> RemoteFile:
        return RemoteFile.from_json(self.request("GET", f"/files/{_id(file_id)}").json())

    def files(
        self,
        *,
        limit: int,
        cursor: str | None,
        status: Sequence[str] | None,
        id_prefix: str | None = None,
    ) -> FilePage:
        params: list[tuple[str, str | int]] = [("limit", limit)]
        if cursor:
            params.append(("cursor", cursor))
        if id_prefix:
            params.append(("id_prefix", id_prefix))
        params.extend(("status", s) for s in status or ())
        return FilePage.from_json(self.request("GET", "/files", params=params).json())

    def download_link(self, file_id: str) -> DownloadLink:
        return DownloadLink.from_json(self.request("GET", f"/files/{_id(file_id)}/download").json())

    def delete(self, file_id: str) -> None:
        self.request("DELETE", f"/files/{_id(file_id)}")
