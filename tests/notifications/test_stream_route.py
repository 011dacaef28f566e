"""The event stream's route class, driven as ASGI: a relay broken after the client left is the
client leaving (one INFO line, counted); broken while the client is still there, an error.

The live test in test_stream.py shows the same over real HTTP, but there whether a stream is
left with an event on its way is a race; here both cases are certain.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from fastapi import APIRouter, FastAPI, Request
from starlette.types import Message

from bigupload import disconnects
from bigupload.notifications.stream import _StreamRoute


def app_whose_relay_breaks() -> FastAPI:
    router = APIRouter(route_class=_StreamRoute)

    @router.get("/stream")
    async def broken(request: Request) -> None:
        await request.receive()  # what the client did meanwhile
        raise anyio.BrokenResourceError

    app = FastAPI()
    app.include_router(router)
    return app


async def call(app: FastAPI, client_message: Message) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return client_message

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": "/stream",
        "raw_path": b"/stream",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {"request_id": "req-left"},
    }
    await app(scope, receive, send)
    return sent


async def test_a_relay_broken_after_the_client_left_is_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_whose_relay_breaks()
    caplog.set_level(logging.INFO, logger="bigupload.disconnects")
    sent = await call(app, {"type": "http.disconnect"})
    assert sent == []  # nobody is there to answer
    assert disconnects.disconnects_of(app).event_streams == 1
    [line] = [r for r in caplog.records if r.name == "bigupload.disconnects"]
    assert line.levelno == logging.INFO and line.exc_info is None
    assert "request_id=req-left" in line.getMessage()


async def test_a_relay_broken_while_the_client_is_there_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_whose_relay_breaks()
    with pytest.raises((anyio.BrokenResourceError, ExceptionGroup)):
        await call(app, {"type": "http.request", "body": b"", "more_body": False})
    assert disconnects.disconnects_of(app).event_streams == 0
    assert [r for r in caplog.records if r.name == "bigupload.disconnects"] == []
