"""uvicorn's httptools protocol with a bound on what it buffers of a request's head.

httptools keeps a header's value, however long, until the header ends, and uvicorn keeps
every header: a client could make the server hold megabytes per connection before the app
sees anything. This protocol counts the bytes of each head as they arrive and refuses, in the
API's JSON shape a head over ``MAX_HEAD_BYTES`` (414 when its target is the long part, else
431), then closes the connection; what is not HTTP at all is 400 ``bad_request`` in the same
shape. Smaller heads reach the app, whose
:class:`~bigupload.edge.EdgeMiddleware` applies the finer limits.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bigupload.request_head import (
    MAX_HEAD_BYTES,
    MAX_TARGET_BYTES,
    Refusal,
    head_too_large,
    target_too_long,
)

_REASONS = {400: b"Bad Request", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}
_MALFORMED = Refusal(400, "bad_request", "the request is not valid HTTP/1.1")


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    _reading_head = True
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if not self._reading_head:
            super().data_received(data)
            return
        room = MAX_HEAD_BYTES - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # What fits is parsed first: it may be malformed, or end the head.
        self._head_bytes = MAX_HEAD_BYTES
        super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._reading_head:
            long_target = len(getattr(self, "url", b"")) > MAX_TARGET_BYTES
            self._refuse(target_too_long() if long_target else head_too_large())
        else:
            self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_head = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(_MALFORMED)

    def _refuse(self, refusal: Refusal) -> None:
        self.logger.info("refused a request: %s", refusal.message)
        body = refusal.body()
        lines = [b"HTTP/1.1 %d %s\r\n" % (refusal.status, _REASONS[refusal.status])]
        lines += [name + b": " + value + b"\r\n" for name, value in refusal.headers(body)]
        self.transport.write(b"".join([*lines, b"\r\n", body]))
        self.transport.close()
