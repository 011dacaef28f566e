"""Steps the expiry tests take: uploads left in each state, a store that goes away."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from bigupload.storage.base import PartToSign, Storage, StorageUnreachable, StoredPart
from tests.api.helpers import send, start, upload_request
from tests.conftest import Caller

MiB = 1024 * 1024
PART = 5 * MiB
BIG = 2 * PART + 12_345  # three parts; the last, short one is the one these tests send
LAST_PART = random.Random(11).randbytes(12_345)


def data(seed: int, size: int = 3000) -> bytes:
    return random.Random(seed).randbytes(size)


async def pending_put(caller: Caller, http: httpx.AsyncClient, body: bytes) -> dict[str, Any]:
    """A single-PUT upload whose bytes were sent but which was never completed."""
    ticket = await start(caller, body, multipart=False)
    put = await send(http, ticket, body)
    assert put.status_code == 200, put.text
    return ticket


async def whole(caller: Caller, http: httpx.AsyncClient, body: bytes) -> dict[str, Any]:
    """An upload sent and completed: an ``uploaded`` file."""
    ticket = await pending_put(caller, http, body)
    done = await caller.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200, done.text
    record: dict[str, Any] = done.json()
    return record


async def pending_parts(caller: Caller, http: httpx.AsyncClient) -> dict[str, Any]:
    """A multipart upload holding its last part, never completed."""
    response = await caller.post(
        "/api/v1/uploads", json=upload_request(b"", size=BIG, multipart=True, part_size=PART)
    )
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    signed = await caller.post(f"/api/v1/uploads/{ticket['id']}/parts", json={"part_numbers": [3]})
    assert signed.status_code == 200, signed.text
    (part,) = signed.json()["parts"]
    put = await http.put(part["url"], content=LAST_PART, headers=part["headers"])
    assert put.status_code == 200, put.text
    return ticket


async def parts_of(storage: Storage, ticket: dict[str, Any]) -> list[StoredPart]:
    return await storage.list_parts(ticket["key"], ticket["upload_id"])


async def upload_ids(storage: Storage) -> set[str]:
    return {u.upload_id for u in await storage.list_multipart_uploads("uploads/")}


async def status_of(caller: Caller, file_id: str) -> str:
    response = await caller.get(f"/api/v1/files/{file_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def part(number: int, size: int) -> PartToSign:
    return PartToSign(part_number=number, size=size)


class Flaky:
    """A store whose network calls fail as unreachable while ``down`` is set; signing works."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.down = False
        self.kind = inner.kind
        self.bucket = inner.bucket

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name.startswith("presign") or not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StorageUnreachable("the test took the store away")
            return await attribute(*args, **kwargs)

        return call
