"""``POST /storage-events`` as MinIO's webhook target calls it, and what events change.

On the local store (served in-process), once per registry (SQLite and PostgreSQL). Events are
posted by the test, so each case (twice, late, out of order, unknown, abandoned, mismatched,
store down) is exactly the delivery it names. The store is always asked again: an event's own
size or ETag never decides anything.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bigupload.files import repository
from bigupload.files.models import FileRecord
from bigupload.files.status import FileStatus
from bigupload.storage.local import LocalStorage
from tests.api.helpers import send, start
from tests.api.test_complete import events_of, overwrite
from tests.conftest import Caller
from tests.storage_events.helpers import minio_body, s3_record

TOKEN = "storage-events-" + "t" * 32
URL = "/api/v1/storage-events"
DATA = b"0123456789" * 300


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"storage_events_token": TOKEN}


async def deliver(http: httpx.AsyncClient, body: Any, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.post(URL, json=body, headers=headers)


def counts(response: httpx.Response) -> dict[str, int]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return {k: v for k, v in body.items() if isinstance(v, int) and v}


async def put_pending(caller: Caller, data: bytes = DATA) -> dict[str, Any]:
    """A file whose bytes are in the store, never completed by the client."""
    ticket = await start(caller, data)
    assert (await send(caller.http, ticket, data)).status_code == 200
    return ticket


async def status_of(caller: Caller, file_id: str) -> str:
    response = await caller.get(f"/api/v1/files/{file_id}")
    status: str = response.json()["status"]
    return status


# -- authentication and shape -------------------------------------------------------------------


async def test_a_minio_delivery_with_the_token_confirms_the_file(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await put_pending(alice)
    body = minio_body(storage.bucket, ticket["key"], size=len(DATA))
    assert counts(await deliver(alice.http, body)) == {"events": 1, "confirmed": 1}
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert record["status"] == "uploaded"
    assert record["stored_size"] == len(DATA)
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


class TestAuthenticationAndShape:
    """The registry plays no part here: SQLite only."""

    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"

    async def test_the_token_is_accepted_without_the_bearer_scheme(
        self, alice: Caller, storage: LocalStorage
    ) -> None:
        ticket = await put_pending(alice)
        body = minio_body(storage.bucket, ticket["key"])
        response = await alice.http.post(URL, json=body, headers={"Authorization": TOKEN})
        assert counts(response) == {"events": 1, "confirmed": 1}

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "wrong"},
            {"Authorization": "Bearer"},
        ],
        ids=["missing", "wrong-bearer", "wrong-plain", "empty-bearer"],
    )
    async def test_without_the_right_token_is_401_and_nothing_changes(
        self, alice: Caller, storage: LocalStorage, headers: dict[str, str]
    ) -> None:
        ticket = await put_pending(alice)
        response = await alice.http.post(
            URL, json=minio_body(storage.bucket, ticket["key"]), headers=headers
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_storage_events_token"
        assert await status_of(alice, ticket["id"]) == "pending"

    async def test_an_api_key_is_not_the_token(self, alice: Caller, storage: LocalStorage) -> None:
        ticket = await put_pending(alice)
        response = await alice.post(URL, json=minio_body(storage.bucket, ticket["key"]))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_storage_events_token"

    async def test_the_token_is_checked_before_the_body(self, alice: Caller) -> None:
        response = await alice.http.post(URL, content=b"{not json")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_storage_events_token"

    @pytest.mark.parametrize(
        ("body", "says"),
        [
            (b"{not json", "not JSON"),
            (b"[1, 2]", "not a JSON object"),
            (b'{"hello": "world"}', "not an S3 event notification"),
            (b'{"Records": {"a": 1}}', "'Records' must be a list"),
            (b'{"Records": [{"eventName": "ObjectCreated:Put"}]}', "Records[0].s3 is missing"),
            (
                b'{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"},'
                b' "object": {"key": "k", "size": -1}}}]}',
                "size is not a size",
            ),
        ],
        ids=["malformed", "array", "other", "records-not-list", "no-s3", "bad-size"],
    )
    async def test_a_body_that_is_not_an_event_is_400(
        self, alice: Caller, body: bytes, says: str
    ) -> None:
        response = await alice.http.post(URL, content=body, headers={"Authorization": TOKEN})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_event"
        assert says in error["message"]

    async def test_a_test_event_and_other_kinds_of_records_change_nothing(
        self, alice: Caller, storage: LocalStorage
    ) -> None:
        ticket = await put_pending(alice)
        test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": storage.bucket}
        assert counts(await deliver(alice.http, test_event)) == {}
        tagging = {"Records": [s3_record(storage.bucket, ticket["key"], "ObjectTagging:Put")]}
        assert counts(await deliver(alice.http, tagging)) == {}
        assert await status_of(alice, ticket["id"]) == "pending"


class TestNoTokenConfigured:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"

    async def test_webhook_deliveries_are_refused(
        self, alice: Caller, storage: LocalStorage
    ) -> None:
        ticket = await put_pending(alice)
        for token in (None, TOKEN):
            response = await deliver(alice.http, minio_body(storage.bucket, ticket["key"]), token)
            assert response.status_code == 401
            error = response.json()["error"]
            assert error["code"] == "storage_events_disabled"
            assert "BIGUPLOAD_STORAGE_EVENTS_TOKEN" in error["message"]
        assert await status_of(alice, ticket["id"]) == "pending"


# -- twice, late, out of order ------------------------------------------------------------------


async def test_the_same_event_twice_confirms_once(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await put_pending(alice)
    body = minio_body(storage.bucket, ticket["key"])
    assert counts(await deliver(alice.http, body)) == {"events": 1, "confirmed": 1}
    assert counts(await deliver(alice.http, body)) == {"events": 1, "duplicate": 1}
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_an_event_after_the_clients_complete_changes_nothing(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await put_pending(alice)
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200
    response = await deliver(alice.http, minio_body(storage.bucket, ticket["key"]))
    assert counts(response) == {"events": 1, "duplicate": 1}
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json() == done.json()
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_removed_before_created_still_confirms(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await put_pending(alice)
    removed = {
        "Records": [
            s3_record(storage.bucket, ticket["key"], "ObjectRemoved:Delete", sequencer="0B")
        ]
    }
    created = {"Records": [s3_record(storage.bucket, ticket["key"], sequencer="0A")]}
    # The store still holds the object: the late-arriving "removed" says nothing true now.
    assert counts(await deliver(alice.http, removed)) == {"events": 1, "removed": 1}
    assert await status_of(alice, ticket["id"]) == "pending"
    assert counts(await deliver(alice.http, created)) == {"events": 1, "confirmed": 1}
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_created_events_with_sequencers_reversed_end_the_same(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await put_pending(alice)
    newer = s3_record(storage.bucket, ticket["key"], sequencer="0055AED6DCD90281F0")
    older = s3_record(storage.bucket, ticket["key"], sequencer="0055AED6DCD90281E5")
    response = await deliver(alice.http, {"Records": [newer, older]})
    assert counts(response) == {"events": 2, "confirmed": 1, "duplicate": 1}
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert record["status"] == "uploaded"
    assert record["stored_size"] == len(DATA)
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_an_event_for_bytes_not_yet_stored_leaves_the_file_pending(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await start(alice, DATA)
    response = await deliver(alice.http, minio_body(storage.bucket, ticket["key"], size=len(DATA)))
    assert counts(response) == {"events": 1, "unconfirmed": 1}
    assert await events_of(app, ticket["id"]) == [(None, "pending")]
    # The real upload still goes through afterwards.
    assert (await send(alice.http, ticket, DATA)).status_code == 200
    assert counts(await deliver(alice.http, minio_body(storage.bucket, ticket["key"]))) == {
        "events": 1,
        "confirmed": 1,
    }


# -- keys bigupload does not know, files it gave up on -------------------------------------------


async def test_an_unknown_key_is_ignored_and_its_object_kept(
    alice: Caller, storage: LocalStorage
) -> None:
    key = "uploads/nobody/2026/01/not-a-file of ours"
    overwrite(storage, key, b"someone else's bytes")
    body = {
        "Records": [
            s3_record(storage.bucket, key),
            s3_record(storage.bucket, key, "ObjectRemoved:Delete"),
            s3_record("another-bucket", key),
        ]
    }
    assert counts(await deliver(alice.http, body)) == {"events": 3, "unknown": 3}
    assert (await storage.stat(key)) is not None
    assert storage.object_path(key).read_bytes() == b"someone else's bytes"


async def test_a_key_of_ours_in_another_bucket_is_unknown(
    alice: Caller, storage: LocalStorage
) -> None:
    ticket = await put_pending(alice)
    response = await deliver(alice.http, minio_body("another-bucket", ticket["key"]))
    assert counts(response) == {"events": 1, "unknown": 1}
    assert await status_of(alice, ticket["id"]) == "pending"


async def test_bytes_landing_after_an_abort_are_deleted(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await start(alice, DATA)
    assert (await alice.delete(f"/api/v1/uploads/{ticket['id']}")).status_code == 200
    # The URL was handed out before the abort: the bytes still land.
    assert (await send(alice.http, ticket, DATA)).status_code == 200
    assert await storage.stat(ticket["key"]) is not None
    response = await deliver(alice.http, minio_body(storage.bucket, ticket["key"]))
    assert counts(response) == {"events": 1, "late": 1}
    assert await storage.stat(ticket["key"]) is None
    assert await status_of(alice, ticket["id"]) == "aborted"


async def test_bytes_landing_after_expiry_are_deleted(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await start(alice, DATA)
    async with app.state.sessionmaker() as session:
        record = await session.get(FileRecord, uuid.UUID(ticket["id"]))
        assert record is not None
        assert await repository.transition(session, record, FileStatus.PENDING, FileStatus.EXPIRED)
        await session.commit()
    assert (await send(alice.http, ticket, DATA)).status_code == 200
    response = await deliver(alice.http, minio_body(storage.bucket, ticket["key"]))
    assert counts(response) == {"events": 1, "late": 1}
    assert await storage.stat(ticket["key"]) is None
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "expired")]


# -- verification, removal, store down -----------------------------------------------------------


async def test_a_stored_size_other_than_declared_fails_the_file(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    ticket = await start(alice, DATA)
    overwrite(storage, ticket["key"], DATA[:-1])  # a store that enforces nothing
    # The event claims the declared size: it is not believed.
    response = await deliver(alice.http, minio_body(storage.bucket, ticket["key"], size=len(DATA)))
    assert counts(response) == {"events": 1, "failed": 1}
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert record["status"] == "failed"
    assert record["error"] == f"the store holds {len(DATA) - 1} bytes, {len(DATA)} were declared"
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "failed")]
    # A failed file's object is not deleted by a later event.
    again = await deliver(alice.http, minio_body(storage.bucket, ticket["key"]))
    assert counts(again) == {"events": 1, "duplicate": 1}
    assert await storage.stat(ticket["key"]) is not None


async def test_removed_object_of_a_readable_file_is_reported_missing(
    alice: Caller, storage: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    ticket = await put_pending(alice)
    assert (await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")).status_code == 200
    await storage.delete(ticket["key"])
    body = minio_body(storage.bucket, ticket["key"], "s3:ObjectRemoved:Delete")
    with caplog.at_level("WARNING", logger="bigupload.storage_events"):
        response = await deliver(alice.http, body)
    assert counts(response) == {"events": 1, "removed": 1, "missing": 1}
    assert any(
        ticket["id"] in r.getMessage() and "removed" in r.getMessage() for r in caplog.records
    )
    assert await status_of(alice, ticket["id"]) == "uploaded"


async def test_store_unreachable_is_503_and_the_file_stays_pending(
    alice: Caller, storage: LocalStorage
) -> None:
    ticket = await put_pending(alice)
    shutil.rmtree(storage.root)
    response = await deliver(alice.http, minio_body(storage.bucket, ticket["key"]))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "storage_unavailable"
    assert await status_of(alice, ticket["id"]) == "pending"
