"""Clients that go away mid-request: a normal event, not an error.

Uppy's pause and cancel, Ctrl-C of the CLI and a closed tab all drop connections half-way: an
upload's body ends early (Starlette's :class:`ClientDisconnect`), or an event stream's client
leaves while events are being sent (FastAPI's stream then fails with
:class:`anyio.BrokenResourceError`). Each is logged as one INFO line with the request id, never
a traceback; the access log shows 499 for a cut-off request (nginx's "client closed request",
an answer nobody receives), and :class:`Disconnects` on ``app.state.disconnects`` counts them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import Scope

log = logging.getLogger("bigupload.disconnects")

#: The status a request whose client left is logged with (nginx's; the client never sees it).
CLIENT_CLOSED_REQUEST = 499


@dataclass
class Disconnects:
    """How many clients of this process went away mid-request (changed on its event loop)."""

    #: Requests whose body was cut off: an upload paused, cancelled or interrupted.
    requests: int = 0
    #: Event streams (``GET /api/v1/events``) whose client left while events were being sent.
    event_streams: int = 0


def disconnects_of(app: FastAPI) -> Disconnects:
    """The app's counts, made on first use."""
    counts: Disconnects | None = getattr(app.state, "disconnects", None)
    if counts is None:
        counts = app.state.disconnects = Disconnects()
    return counts


def note(scope: Scope, what: str) -> None:
    """Log that the client of the request in ``scope`` left while ``what`` happened."""
    request_id = scope.get("state", {}).get("request_id", "-")
    log.info(
        "client went away %s: %s %s request_id=%s",
        what,
        scope.get("method", "-"),
        scope.get("path", "-"),
        request_id,
        extra={"request_id": request_id},
    )


async def client_disconnected(request: Request, exc: Exception) -> Response:
    """The handler of :class:`ClientDisconnect`: one INFO line, a count, 499 in the access log."""
    assert isinstance(exc, ClientDisconnect)
    disconnects_of(request.app).requests += 1
    note(request.scope, "before the request's body ended")
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ClientDisconnect, client_disconnected)
    disconnects_of(app)
