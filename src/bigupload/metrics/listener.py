"""A process without an HTTP server of its own (``bigupload worker``) answers scrapes here:
``GET /metrics`` on a port of its own, in a thread, with the same token rule as ``serve``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST

from bigupload.errors import AppError, error_body
from bigupload.metrics.endpoint import PATH, check_token, render

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a line each."""


def metrics_app(token: str | None) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _error(start_response, AppError("no such path", code="not_found", status=404))
        try:
            check_token(environ.get("HTTP_AUTHORIZATION"), token)
        except AppError as exc:
            return _error(start_response, exc)
        body = render()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


def _error(start_response: StartResponse, exc: AppError) -> list[bytes]:
    body = json.dumps(error_body(exc.code, exc.message, exc.details)).encode()
    reason = {401: "Unauthorized", 404: "Not Found"}.get(exc.status, "Error")
    headers = [("Content-Type", "application/json"), *(exc.headers or {}).items()]
    start_response(f"{exc.status} {reason}", headers)
    return [body]


def start_listener(host: str, port: int, token: str | None) -> WSGIServer:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; ``shutdown()`` stops it."""
    server = make_server(host, port, metrics_app(token), _Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
