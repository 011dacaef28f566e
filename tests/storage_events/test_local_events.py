"""The local store reports what it stored, as S3 does, through the storage-event path.

With ``local_storage_events`` on, a single PUT makes the file ``uploaded`` without the client's
complete call, and a multipart upload completed through the API still records one change.
Deliveries run in the background: ``drain_events`` waits (with a deadline) for those in flight.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from bigupload.storage.base import StoredObject
from bigupload.storage.local import LocalStorage
from bigupload.storage.local.events import COMPLETE_MULTIPART, PUT, object_created
from bigupload.storage_events.parse import parse_document
from tests.api.helpers import send, start
from tests.api.test_complete import events_of
from tests.conftest import Caller

MiB = 1024 * 1024
DATA = b"local-event " * 1000
BIG = random.Random(4).randbytes(5 * MiB + 4321)  # two parts: 5 MiB and the rest


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"local_storage_events": True}


async def test_a_put_alone_makes_the_file_uploaded(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await start(alice, DATA)
    assert (await send(alice.http, ticket, DATA)).status_code == 200
    await storage.drain_events()
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert record["status"] == "uploaded"
    assert record["stored_size"] == len(DATA)
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]
    # The client's complete call still answers, and changes nothing more.
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200
    assert done.json()["status"] == "uploaded"
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_a_multipart_upload_completed_through_the_api_is_recorded_once(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    body = {
        "filename": "big.bin",
        "content_type": "application/octet-stream",
        "size": len(BIG),
        "multipart": True,
        "part_size": 5 * MiB,
    }
    ticket = (await alice.post("/api/v1/uploads", json=body)).json()
    assert ticket["part_count"] == 2
    signed = await alice.post(
        f"/api/v1/uploads/{ticket['id']}/parts", json={"part_numbers": [1, 2]}
    )
    for part in signed.json()["parts"]:
        n = part["part_number"]
        chunk = BIG[(n - 1) * 5 * MiB : n * 5 * MiB]
        put = await alice.http.put(part["url"], content=chunk, headers=part["headers"])
        assert put.status_code == 200
    assert await events_of(app, ticket["id"]) == [(None, "pending")]  # parts are no object
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200, done.text
    await storage.drain_events()
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "uploaded"
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_a_slow_or_failing_sink_never_delays_or_fails_the_put(
    alice: Caller, storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    received: list[Mapping[str, Any]] = []

    async def stuck_then_broken(notification: Mapping[str, Any]) -> None:
        received.append(notification)
        await release.wait()
        raise RuntimeError("the registry is on fire")

    storage.event_sink = stuck_then_broken
    ticket = await start(alice, DATA)
    assert (await send(alice.http, ticket, DATA)).status_code == 200
    # The PUT was answered; its delivery starts afterwards and stays stuck until released.
    for _ in range(1000):  # bounded: the background task runs at the next loop iterations
        if received:
            break
        await asyncio.sleep(0)
    assert len(received) == 1
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"
    release.set()
    with caplog.at_level(logging.ERROR, logger="bigupload.storage.local"):
        await storage.drain_events()
    (logged,) = [r for r in caplog.records if r.name == "bigupload.storage.local"]
    assert "could not be handled" in logged.getMessage()
    assert logged.exc_info is not None
    # The bytes are stored; the client's complete still confirms them.
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.json()["status"] == "uploaded"


class TestOff:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"local_storage_events": False}

    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"

    async def test_no_event_is_sent(self, alice: Caller, storage: LocalStorage) -> None:
        assert storage.event_sink is None
        ticket = await start(alice, DATA)
        assert (await send(alice.http, ticket, DATA)).status_code == 200
        await storage.drain_events()
        assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"


@pytest.mark.parametrize("event_name", [PUT, COMPLETE_MULTIPART])
def test_records_are_shaped_as_s3_sends_them(event_name: str) -> None:
    key = "uploads/a b/2026/01/c+d%e"
    stored = StoredObject(key=key, size=42, etag='"abc123-2"')
    notification = object_created("local", stored, event_name)
    (record,) = notification["Records"]
    assert record["eventName"] == event_name
    assert record["s3"]["object"]["key"] == "uploads%2Fa+b%2F2026%2F01%2Fc%2Bd%25e"
    assert record["s3"]["object"]["eTag"] == "abc123-2"
    assert record["s3"]["bucket"]["name"] == "local"
    (event,) = parse_document(notification)
    assert (event.bucket, event.key, event.size, event.event_name) == ("local", key, 42, event_name)
    later = object_created("local", stored, event_name)["Records"][0]["s3"]["object"]
    assert later["sequencer"] > record["s3"]["object"]["sequencer"]
