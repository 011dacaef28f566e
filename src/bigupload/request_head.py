"""Caps on the request line and headers, answered in the API's error shape.

A request target over :data:`MAX_TARGET_BYTES` is refused with 414 ``uri_too_long``; more than
:data:`MAX_HEADER_COUNT` headers, or over :data:`MAX_HEADER_BYTES` of them, with 431
``headers_too_large``. :class:`bigupload.edge.EdgeMiddleware` checks every request the app gets;
``bigupload serve`` also stops reading a head at :data:`MAX_HEAD_BYTES`
(:mod:`bigupload.cli.http_protocol`), so nothing larger is ever buffered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.types import Scope

from bigupload.errors import error_body

#: Room for ``GET /s3/params``, whose query carries a file's metadata (up to 8 KiB as JSON,
#: more once percent-encoded) and its name.
MAX_TARGET_BYTES = 16 * 1024
MAX_HEADER_COUNT = 100
#: Names and values, counted as sent (``name: value\r\n``).
MAX_HEADER_BYTES = 16 * 1024
#: What the server buffers of one request's head at most: both limits and the request line.
MAX_HEAD_BYTES = MAX_TARGET_BYTES + MAX_HEADER_BYTES + 4 * 1024


#: How every route documents these refusals in the OpenAPI.
HEAD_ANSWERS: dict[int | str, str] = {
    414: f"`uri_too_long`: the path and query are over {MAX_TARGET_BYTES} bytes.",
    431: f"`headers_too_large`: over {MAX_HEADER_COUNT} headers or {MAX_HEADER_BYTES} bytes "
    "of them.",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    message: str

    def body(self, path: str = "") -> bytes:
        return json.dumps(error_body(self.code, self.message, path=path)).encode()

    def headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]


def target_too_long() -> Refusal:
    return Refusal(
        414, "uri_too_long", f"the request target is longer than {MAX_TARGET_BYTES} bytes"
    )


def headers_too_large(detail: str) -> Refusal:
    return Refusal(431, "headers_too_large", f"the request headers are too large: {detail}")


def head_too_large() -> Refusal:
    return headers_too_large(f"the request line and headers exceed {MAX_HEAD_BYTES} bytes")


def check_head(target_bytes: int, count: int, head_bytes: int) -> Refusal | None:
    """The refusal of a head with a target of ``target_bytes``, ``count`` headers and
    ``head_bytes`` of them (as sent: ``name: value\r\n`` each), if it breaks a cap."""
    if target_bytes > MAX_TARGET_BYTES:
        return target_too_long()
    if count > MAX_HEADER_COUNT:
        return headers_too_large(f"more than {MAX_HEADER_COUNT} headers")
    if head_bytes > MAX_HEADER_BYTES:
        return headers_too_large(f"more than {MAX_HEADER_BYTES} bytes of headers")
    return None


def target_length(scope: Scope) -> int:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return len(raw_path) + (len(query) + 1 if query else 0)
