"""The one middleware every request passes: its id and access-log line, the request-head caps,
and, for the API's paths, cross-origin access and the body cap.

One pure ASGI layer, one pass over the headers, in place of a middleware per concern (each
a coroutine frame and a scan of the headers of its own). What each part does is unchanged:

* the request id (a sane ``X-Request-ID`` kept, else a new one), echoed in the answer, and a
  line in the access log per request (:func:`bigupload.logs.log_request`);
* the caps of :mod:`bigupload.request_head`, answered 414 / 431 in the API's error shape;
* for ``/api/`` and ``/s3/``: CORS headers for the configured origins (:mod:`bigupload.cors`)
  and the cap on the body's size (:mod:`bigupload.body_limit`);
* with metrics on, the request's route template, method, status and duration
  (:mod:`bigupload.metrics.http`), for every path but ``/metrics`` itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bigupload.body_limit import BodyLimitMiddleware
from bigupload.cors import PATH_PREFIXES, api_cors
from bigupload.logs import REQUEST_ID_RE, log_request
from bigupload.metrics.http import record_request
from bigupload.request_head import Refusal, check_head, target_length

METRICS_PATH = "/metrics"


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_size: int,
        cors_origins: Iterable[str] = (),
        prefixes: tuple[str, ...] = PATH_PREFIXES,
        metrics: bool = False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.prefixes = prefixes
        self.limited = BodyLimitMiddleware(app, max_size=max_body_size, path_prefix=prefixes)
        self.max_body_size = max_body_size
        self.origins = frozenset(origin.lower() for origin in cors_origins)
        self.cors = api_cors(self.limited, self.origins) if self.origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id: str | None = None
        length: bytes | None = None
        origin: bytes | None = None
        head_bytes = 0
        headers = scope.get("headers", ())
        for name, value in headers:
            head_bytes += len(name) + len(value) + 4
            if name == b"x-request-id":
                if request_id is None:
                    candidate = value.decode("latin-1")
                    request_id = candidate if REQUEST_ID_RE.match(candidate) else ""
            elif name == b"content-length":
                if length is None:
                    length = value
            elif name == b"origin" and origin is None:
                origin = value
        request_id = request_id or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            refusal = check_head(target_length(scope), len(headers), head_bytes)
            if refusal is not None:
                await _answer(send_with_id, refusal, scope["path"])
            elif not scope["path"].startswith(self.prefixes):
                await self.app(scope, receive, send_with_id)
            elif self.cors is not None and origin is not None and self._allowed(origin):
                await self.cors(scope, receive, send_with_id)
            elif length is not None and length.isdigit() and int(length) <= self.max_body_size:
                # The server delivers no more than the declared length: nothing to count.
                await self.app(scope, receive, send_with_id)
            else:
                await self.limited(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            log_request(scope, status, seconds * 1000, request_id)
            if self.metrics and scope["path"] != METRICS_PATH:
                record_request(scope, status, seconds)

    def _allowed(self, origin: bytes) -> bool:
        # As Starlette's Headers read it; origins are compared as configured (lower case).
        return origin.decode("latin-1") in self.origins


async def _answer(send: Send, refusal: Refusal, path: str) -> None:
    body = refusal.body(path)
    await send(
        {"type": "http.response.start", "status": refusal.status, "headers": refusal.headers(body)}
    )
    await send({"type": "http.response.body", "body": body})
