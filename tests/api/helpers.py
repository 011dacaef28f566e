"""Steps most API tests take: start an upload, send its bytes, confirm it."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from tests.conftest import Caller


def upload_request(data: bytes, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "filename": "movie.mp4",
        "content_type": "video/mp4",
        "size": len(data),
    }
    body.update(fields)
    return body


async def start(caller: Caller, data: bytes, **fields: Any) -> dict[str, Any]:
    response = await caller.post("/api/v1/uploads", json=upload_request(data, **fields))
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


async def send(http: httpx.AsyncClient, ticket: dict[str, Any], data: bytes) -> httpx.Response:
    """PUT the bytes exactly as the ticket says: its method, URL and headers."""
    return await http.request(
        ticket["method"], ticket["url"], content=data, headers=ticket["headers"]
    )


async def uploaded(caller: Caller, data: bytes, **fields: Any) -> dict[str, Any]:
    """A file whose upload is started, sent and confirmed."""
    ticket = await start(caller, data, **fields)
    put = await send(caller.http, ticket, data)
    assert put.status_code == 200, put.text
    done = await caller.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200, done.text
    record: dict[str, Any] = done.json()
    return record


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
