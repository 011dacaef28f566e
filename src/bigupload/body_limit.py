"""A cap on the size of API request bodies, answered in the API's error shape.

The API takes small JSON documents; file bytes never come this way (they go to the store). A
declared ``Content-Length`` above the cap is refused before anything is read; a chunked body
is counted as it arrives and cut off at the cap.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bigupload.errors import error_body


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_size: int, path_prefix: str | tuple[str, ...]) -> None:
        self.app = app
        self.max_size = max_size
        self.path_prefix = path_prefix

    async def _refuse(self, send: Send, path: str) -> None:
        message = f"the request body is larger than {self.max_size} bytes"
        body = json.dumps(error_body("payload_too_large", message, path=path)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.path_prefix):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_size:
                    await self._refuse(send, scope["path"])
                    return
                break

        received = 0
        exceeded = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_size:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # Frameworks turn a failed body read into an answer of their own: replace it.
            nonlocal refused
            if exceeded:
                if not refused:
                    refused = True
                    await self._refuse(send, scope["path"])
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not refused:
                await self._refuse(send, scope["path"])
