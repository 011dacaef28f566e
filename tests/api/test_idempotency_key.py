"""``POST /api/v1/uploads`` with an ``Idempotency-Key``: a repeated create answers the upload
the first one began (one file, one store upload), on SQLite and PostgreSQL, local and S3."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bigupload.files.models import FileRecord
from bigupload.storage.base import Storage
from tests.api.helpers import send, upload_request
from tests.conftest import LOCAL_AND_MOTO, Caller, store_named

MiB = 1024 * 1024
DATA = b"k" * 1000
PARTS = dict(multipart=True, part_size=5 * MiB, size=12 * MiB)


async def create(caller: Caller, key: str | None, **fields: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await caller.post(
        "/api/v1/uploads", json=upload_request(DATA, **fields), headers=headers
    )


async def files_of(caller: Caller) -> list[FileRecord]:
    app = caller.http._transport.app  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:
        return list((await session.scalars(select(FileRecord))).all())


async def test_a_repeated_single_put_create_answers_the_same_upload_signed_anew(
    alice: Caller,
) -> None:
    key = str(uuid.uuid4())
    first = await create(alice, key)
    again = await create(alice, key)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    one, two = first.json(), again.json()
    assert two["id"] == one["id"] and two["key"] == one["key"]
    assert two["method"] == "PUT" and two["headers"] == one["headers"]
    assert again.headers["location"] == f"/api/v1/files/{one['id']}"
    assert len(await files_of(alice)) == 1
    # The repeat's URL works: the upload completes through it.
    put = await send(alice.http, two, DATA)
    assert put.status_code == 200, put.text
    done = await alice.post(f"/api/v1/uploads/{one['id']}/complete")
    assert (done.status_code, done.json()["status"]) == (200, "uploaded")


class TestMultipartOnEachStore:
    @pytest.fixture(params=LOCAL_AND_MOTO)
    def storage(self, request: pytest.FixtureRequest) -> Storage:
        return store_named(request)

    async def test_a_repeated_multipart_create_answers_the_same_store_upload(
        self, alice: Caller, storage: Storage
    ) -> None:
        key = "crash-safe-" + uuid.uuid4().hex
        first = await create(alice, key, **PARTS)
        again = await create(alice, key, **PARTS)
        assert (first.status_code, again.status_code) == (201, 201), again.text
        one, two = first.json(), again.json()
        fields = ("id", "key", "upload_id", "part_size", "part_count", "part_checksums")
        assert {f: two[f] for f in fields} == {f: one[f] for f in fields}
        assert len(await files_of(alice)) == 1
        held = await alice.get(f"/api/v1/uploads/{one['id']}/parts")
        assert held.status_code == 200, held.text

    async def test_concurrent_creates_with_one_key_make_one_upload(
        self, alice: Caller, storage: Storage
    ) -> None:
        key = uuid.uuid4().hex
        answers = await asyncio.gather(*(create(alice, key, **PARTS) for _ in range(8)))
        assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        assert len({a.json()["upload_id"] for a in answers}) == 1
        assert len(await files_of(alice)) == 1
        # The racing creates that lost left no store upload behind.
        in_store = await storage.list_multipart_uploads("uploads/")
        assert [u.upload_id for u in in_store] == [answers[0].json()["upload_id"]]


async def test_creates_without_a_key_or_with_other_keys_make_new_uploads(alice: Caller) -> None:
    ids = {
        (await create(alice, key)).json()["id"]
        for key in (None, None, "one", "two", "One")  # keys are case-sensitive
    }
    assert len(ids) == 5
    assert len(await files_of(alice)) == 5


async def test_keys_are_per_owner(alice: Caller, bob: Caller) -> None:
    mine = await create(alice, "shared-key")
    theirs = await create(bob, "shared-key")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["key"].startswith("uploads/bob/")


@pytest.mark.parametrize(
    "change",
    [
        {"filename": "other.mp4"},
        {"content_type": "video/webm"},
        {"size": len(DATA) + 1},
        {"metadata": {"album": "2027"}},
        {"checksum_sha256": "0" * 64},
        {"multipart": True},
    ],
)
async def test_a_key_reused_for_another_request_is_422_and_changes_nothing(
    alice: Caller, change: dict[str, Any]
) -> None:
    first = await create(alice, "k1", metadata={"album": "2026"})
    assert first.status_code == 201
    other = await create(alice, "k1", **{"metadata": {"album": "2026"}, **change})
    assert other.status_code == 422, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_key_mismatch"
    assert error["details"] == {"file_id": first.json()["id"]}
    assert len(await files_of(alice)) == 1


async def test_a_key_whose_upload_is_no_longer_pending_is_409_naming_it(alice: Caller) -> None:
    first = (await create(alice, "k2")).json()
    aborted = await alice.delete(f"/api/v1/uploads/{first['id']}")
    assert aborted.status_code == 200, aborted.text
    again = await create(alice, "k2")
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error["code"] == "idempotency_key_spent"
    assert error["details"] == {"file_id": first["id"], "status": "aborted"}
    assert len(await files_of(alice)) == 1


@pytest.mark.parametrize("key", ["", "a" * 256, "with space", "tab\there", "é"])
async def test_malformed_keys_are_422(alice: Caller, key: str) -> None:
    headers = {"Idempotency-Key": key.encode()}
    response = await alice.post("/api/v1/uploads", json=upload_request(DATA), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    app = alice.http._transport.app  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(FileRecord)) == 0
