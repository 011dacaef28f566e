"""``POST /uploads/{id}/complete``: checks the store, is idempotent, and is safe when raced."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import select

from bigupload.files.models import FileEvent
from bigupload.storage.local import LocalStorage
from tests.api.helpers import send, sha256_hex, start
from tests.conftest import Caller


async def events_of(app: FastAPI, file_id: str) -> list[tuple[str | None, str]]:
    async with app.state.sessionmaker() as session:
        rows = (
            await session.execute(
                select(FileEvent)
                .where(FileEvent.file_id == uuid.UUID(file_id))
                .order_by(FileEvent.id)
            )
        ).scalars()
        return [(e.from_status, e.to_status) for e in rows]


def overwrite(store: LocalStorage, key: str, data: bytes) -> None:
    """Put other bytes behind the store's back, as a store that enforces nothing might."""
    path: Path = store.object_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def test_complete_confirms_size_and_etag(app: FastAPI, alice: Caller) -> None:
    data = b"0123456789" * 100
    ticket = await start(alice, data)
    assert (await send(alice.http, ticket, data)).status_code == 200
    response = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert response.status_code == 200
    record = response.json()
    assert record["status"] == "uploaded"
    assert record["stored_size"] == 1000
    # The local store's ETag: the first 16 bytes of the SHA-256 (no Content-MD5 was sent).
    assert record["etag"] == '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    assert record["uploaded_at"] is not None
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_complete_before_upload_is_409_and_changes_nothing(
    app: FastAPI, alice: Caller
) -> None:
    ticket = await start(alice, b"abc")
    response = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "upload_incomplete"
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"
    # The client may still upload and confirm afterwards.
    assert (await send(alice.http, ticket, b"abc")).status_code == 200
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200
    assert done.json()["status"] == "uploaded"
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_double_complete_answers_the_same_file(app: FastAPI, alice: Caller) -> None:
    ticket = await start(alice, b"abc")
    await send(alice.http, ticket, b"abc")
    first = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    second = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_racing_completes_record_one_change_and_agree(app: FastAPI, alice: Caller) -> None:
    data = b"race" * 1000
    ticket = await start(alice, data)
    await send(alice.http, ticket, data)
    responses = await asyncio.gather(
        *(alice.post(f"/api/v1/uploads/{ticket['id']}/complete") for _ in range(8))
    )
    assert [r.status_code for r in responses] == [200] * 8
    bodies = [r.json() for r in responses]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["status"] == "uploaded"
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_size_mismatch_fails_the_file_with_a_reason(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await start(alice, b"x" * 100)
    overwrite(storage, ticket["key"], b"x" * 60)
    response = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "size_mismatch"
    assert error["details"] == {"declared": 100, "stored": 60}
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert record["status"] == "failed"
    assert record["error"] == "the store holds 60 bytes, 100 were declared"
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "failed")]
    # A later complete explains why, and the stored bytes are still there to inspect.
    again = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "upload_failed"
    assert storage.object_path(ticket["key"]).read_bytes() == b"x" * 60


async def test_checksum_mismatch_fails_the_file(alice: Caller, storage: LocalStorage) -> None:
    declared = b"a" * 64
    ticket = await start(alice, declared, checksum_sha256=sha256_hex(declared))
    overwrite(storage, ticket["key"], b"b" * 64)
    response = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "checksum_mismatch"
    assert error["details"] == {"declared": sha256_hex(declared), "stored": sha256_hex(b"b" * 64)}
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "failed"


async def test_checksum_is_verified_when_declared(alice: Caller) -> None:
    data = b"verified" * 100
    ticket = await start(alice, data, checksum_sha256=sha256_hex(data))
    assert (await send(alice.http, ticket, data)).status_code == 200
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200
    assert done.json()["checksum_sha256"] == sha256_hex(data)


async def test_the_signed_url_refuses_a_body_with_another_checksum(alice: Caller) -> None:
    data = b"a" * 64
    ticket = await start(alice, data, checksum_sha256=sha256_hex(data))
    response = await send(alice.http, ticket, b"b" * 64)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "checksum_mismatch"
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 409
    assert done.json()["error"]["code"] == "upload_incomplete"


async def test_complete_on_a_file_marked_failed_is_409(alice: Caller) -> None:
    ticket = await start(alice, b"abc")
    await send(alice.http, ticket, b"abc")
    marked = await alice.put(
        f"/api/v1/files/{ticket['id']}/status", json={"status": "failed", "reason": "cancelled"}
    )
    assert marked.status_code == 200
    response = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "upload_failed"
    assert error["details"] == {"status": "failed", "error": "cancelled"}


async def test_a_replayed_upload_url_cannot_replace_a_confirmed_file(
    alice: Caller, storage: LocalStorage
) -> None:
    data = b"original" * 10
    ticket = await start(alice, data)
    assert (await send(alice.http, ticket, data)).status_code == 200
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200
    replay = await send(alice.http, ticket, b"replaced" * 10)
    assert replay.status_code == 412
    assert replay.json()["error"]["code"] == "object_exists"
    assert storage.object_path(ticket["key"]).read_bytes() == data
    link = (await alice.get(f"/api/v1/files/{ticket['id']}/download")).json()
    assert (await alice.http.get(link["url"])).content == data


async def test_an_upload_without_the_signed_precondition_is_refused(
    alice: Caller, storage: LocalStorage
) -> None:
    ticket = await start(alice, b"abc")
    headers = {k: v for k, v in ticket["headers"].items() if k != "If-None-Match"}
    response = await alice.http.put(ticket["url"], content=b"abc", headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "precondition_header_missing"
    assert await storage.stat(ticket["key"]) is None
