"""A loopback proxy in front of an S3 server that answers ``501 NotImplemented`` for some bucket
sub-resources (``?notification``, ``?cors`` ...), as stores lacking those APIs do (MinIO answers
so for bucket CORS), and passes every other request through unchanged."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import httpx

_NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>'
    b"<Message>A header you provided implies functionality that is not implemented</Message>"
    b"</Error>"
)


class UnimplementedProxy:
    def __init__(self, upstream: str, missing: set[str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.missing = missing
        self.refused: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
                hit = proxy.missing & set(query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if hit:
                    proxy.refused.append(f"{self.command} {sorted(hit)[0]}")
                    self.send_response(501)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_NOT_IMPLEMENTED)))
                    self.end_headers()
                    self.wfile.write(_NOT_IMPLEMENTED)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                answer = httpx.request(
                    self.command, proxy.upstream + self.path, headers=headers, content=body
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> UnimplementedProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
