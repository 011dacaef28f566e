"""The outbox: file status events become notification jobs, once each, in order.

Events are made through the API (create, send, complete, re-label, delete) and the dispatcher is
called as the runner would call it. On PostgreSQL two dispatchers on two engines share the work.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from bigupload.db import create_engine, create_sessionmaker
from bigupload.files.models import FileEvent
from bigupload.jobs.kinds import PeriodicContext
from bigupload.jobs.models import Job, JobStatus
from bigupload.notifications.dispatch import DISPATCH, dispatch_events, dispatch_round
from tests.api.helpers import uploaded
from tests.conftest import Caller
from tests.support.statements import statements_of

ALL_URL = "http://127.0.0.1:9/all"
DONE_URL = "http://127.0.0.1:9/done"
LIFECYCLE = ["pending", "uploaded", "processing", "completed"]
POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def tag(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "webhooks": [
            {"url": ALL_URL, "secret": new_secret()},
            {"url": DONE_URL, "secret": new_secret(), "events": ["file.completed"]},
        ],
        "webhook_max_attempts": 7,
    }


def context(app: FastAPI, sessionmaker: Any = None) -> PeriodicContext:
    return PeriodicContext(
        worker_id="test",
        settings=app.state.settings,
        storage=app.state.storage,
        sessionmaker=sessionmaker or app.state.sessionmaker,
    )


async def completed_file(caller: Caller, data: bytes = b"some bytes") -> str:
    """A file taken through pending, uploaded, processing and completed: four events."""
    file_id: str = (await uploaded(caller, data))["id"]
    for target in ("processing", "completed"):
        response = await caller.put(f"/api/v1/files/{file_id}/status", json={"status": target})
        assert response.status_code == 200, response.text
    return file_id


async def jobs_of(app: FastAPI, kind: str | None = None) -> list[Job]:
    """Notification jobs (of ``kind``), oldest first; other kinds (processing) are not ours."""
    kinds = [kind] if kind is not None else ["webhook", "email", "sns"]
    query = select(Job).where(Job.kind.in_(kinds)).order_by(Job.id)
    async with app.state.sessionmaker() as session:
        return list((await session.execute(query)).scalars())


async def events(app: FastAPI) -> list[FileEvent]:
    async with app.state.sessionmaker() as session:
        return list((await session.execute(select(FileEvent).order_by(FileEvent.id))).scalars())


async def undispatched(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        query = select(func.count()).where(FileEvent.dispatched.is_(False))
        return int((await session.execute(query)).scalar_one())


def test_dispatch_is_a_shared_periodic_at_the_poll_interval(tmp_path: Any) -> None:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, "sqlite+aiosqlite://", job_poll_interval=0.25)
    assert (DISPATCH.name, DISPATCH.exclusive, DISPATCH.interval(settings)) == (
        "dispatch",
        False,
        0.25,
    )


async def test_one_webhook_job_per_matching_endpoint_and_event(app: FastAPI, alice: Caller) -> None:
    file_id = await completed_file(alice)
    assert await dispatch_events(context(app)) == 4

    recorded = await events(app)
    assert [e.to_status for e in recorded] == LIFECYCLE
    assert all(e.dispatched for e in recorded)
    jobs = await jobs_of(app)
    assert {j.kind for j in jobs} == {"webhook"}
    to_all = [j for j in jobs if j.payload["endpoint"] == ALL_URL]
    to_done = [j for j in jobs if j.payload["endpoint"] == DONE_URL]
    assert [j.payload["document"]["type"] for j in to_all] == [f"file.{s}" for s in LIFECYCLE]
    assert [j.payload["document"]["type"] for j in to_done] == ["file.completed"]
    for job in jobs:
        event_id = job.payload["document"]["data"]["event_id"]
        url = job.payload["endpoint"]
        assert job.payload["webhook_id"] == f"evt_{event_id}"
        assert job.dedupe_key == f"webhook:{tag(url)}:{event_id}"
        assert job.ordering_key == f"webhook:{tag(url)}:{file_id}"
        assert (job.owner, str(job.file_id)) == ("alice", file_id)
        assert (job.status, job.attempts, job.max_attempts) == (JobStatus.QUEUED, 0, 7)
    # Jobs of one file and endpoint are queued in the order of their events.
    assert [j.payload["document"]["data"]["event_id"] for j in to_all] == [e.id for e in recorded]


async def test_the_document_has_the_agreed_shape(app: FastAPI, alice: Caller) -> None:
    file_id = await completed_file(alice)
    await dispatch_events(context(app))
    job = next(j for j in await jobs_of(app) if j.payload["endpoint"] == DONE_URL)
    event = (await events(app))[-1]
    document = job.payload["document"]
    assert set(document) == {"type", "timestamp", "data"}
    assert document["type"] == "file.completed"
    assert document["timestamp"] == event.created_at.isoformat().replace("+00:00", "Z")
    data = document["data"]
    file = data.pop("file")
    assert data == {
        "event_id": event.id,
        "file_id": file_id,
        "owner": "alice",
        "from_status": "processing",
        "to_status": "completed",
        "reason": None,
    }
    info = (await alice.get(f"/api/v1/files/{file_id}")).json()
    assert file == info  # FileOut as JSON, as the API shows it


async def test_a_file_gone_by_dispatch_time_is_sent_as_null(app: FastAPI, alice: Caller) -> None:
    file_id = (await uploaded(alice, b"short-lived"))["id"]
    assert (await alice.delete(f"/api/v1/files/{file_id}")).status_code == 204
    assert await dispatch_events(context(app)) == 3
    documents = [j.payload["document"] for j in await jobs_of(app)]
    assert [d["type"] for d in documents] == ["file.pending", "file.uploaded", "file.deleted"]
    assert [d["data"]["file"] for d in documents] == [None, None, None]


async def test_dispatching_twice_queues_nothing_more(app: FastAPI, alice: Caller) -> None:
    await completed_file(alice)
    assert await dispatch_events(context(app)) == 4
    before = [(j.id, j.dedupe_key) for j in await jobs_of(app)]
    assert await dispatch_events(context(app)) == 0
    assert [(j.id, j.dedupe_key) for j in await jobs_of(app)] == before
    assert len(before) == 5


async def test_a_batch_queues_its_jobs_in_one_insert(app: FastAPI, alice: Caller) -> None:
    await completed_file(alice)
    await completed_file(alice, b"other bytes")
    with statements_of(app.state.engine) as seen:
        assert await dispatch_events(context(app)) == 8
    assert len(seen.transactions) == 1
    assert len(seen.starting("INSERT INTO jobs")) == 1
    notifies = seen.starting("SELECT pg_notify")  # the runners' wake-up, on PostgreSQL
    assert len(notifies) == (1 if app.state.engine.dialect.name == "postgresql" else 0)
    # claim, order check, files, jobs, mark: not one per event
    assert len(seen.all) - len(notifies) <= 5
    assert len(await jobs_of(app)) == 10


async def test_a_round_commits_between_batches(app: FastAPI, alice: Caller) -> None:
    await completed_file(alice)
    await completed_file(alice, b"other bytes")
    with statements_of(app.state.engine) as seen:
        assert await dispatch_round(context(app), batch=3) == 8
    assert len(seen.transactions) == 3  # 3, 3, 2
    assert len(await jobs_of(app)) == 10


async def test_a_batch_takes_the_oldest_events_first(app: FastAPI, alice: Caller) -> None:
    await completed_file(alice)
    assert await dispatch_events(context(app), batch=3) == 3
    assert [e.dispatched for e in await events(app)] == [True, True, True, False]
    assert len(await jobs_of(app)) == 3
    assert await dispatch_events(context(app), batch=3) == 1
    assert await undispatched(app) == 0
    assert len(await jobs_of(app)) == 5


class TestNoSinks:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {}

    async def test_events_are_marked_and_no_job_is_made(self, app: FastAPI, alice: Caller) -> None:
        await completed_file(alice)
        assert await undispatched(app) == 4
        assert await dispatch_events(context(app)) == 4
        assert await undispatched(app) == 0
        assert await jobs_of(app) == []

    async def test_a_round_is_one_update_per_batch_and_reads_nothing(
        self, app: FastAPI, alice: Caller
    ) -> None:
        for n in range(2):
            await completed_file(alice, bytes([n]))  # 8 events
        with statements_of(app.state.engine) as seen:
            assert await dispatch_events(context(app)) == 8
        assert seen.transactions == [seen.starting("UPDATE file_events")]
        assert len(seen.all) == 1
        assert await undispatched(app) == 0

        await completed_file(alice, b"more")  # 4 more: batches of 3, 1
        with statements_of(app.state.engine) as seen:
            assert await dispatch_round(context(app), batch=3) == 4
        assert [len(t) for t in seen.transactions] == [1, 1]
        assert len(seen.starting("UPDATE file_events")) == 2
        assert await undispatched(app) == 0
        with statements_of(app.state.engine) as seen:
            assert await dispatch_round(context(app)) == 0
        assert len(seen.all) == 1  # nothing to do: still one cheap statement


class TestEmailAndSns:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {
            "smtp_url": "smtp://127.0.0.1:9",
            "email_events": "completed,failed",
            "sns_publish_topic_arn": "arn:aws:sns:us-east-1:123456789012:uploads",
            "job_max_attempts": 5,
        }

    async def test_one_email_job_for_chosen_statuses_and_one_sns_job_per_event(
        self, app: FastAPI, alice: Caller
    ) -> None:
        file_id = await completed_file(alice)
        assert await dispatch_events(context(app)) == 4
        recorded = await events(app)
        emails = await jobs_of(app, "email")
        sns = await jobs_of(app, "sns")
        assert await jobs_of(app, "webhook") == []
        assert [j.payload["document"]["type"] for j in emails] == ["file.completed"]
        assert [j.dedupe_key for j in emails] == [f"email:{recorded[-1].id}"]
        assert [j.dedupe_key for j in sns] == [f"sns:{e.id}" for e in recorded]
        assert [j.payload["document"]["data"]["to_status"] for j in sns] == LIFECYCLE
        for job in emails + sns:
            assert set(job.payload) == {"document"}
            assert (job.owner, str(job.file_id), job.max_attempts) == ("alice", file_id, 5)


# -- several dispatchers on one PostgreSQL --------------------------------------------------------


@POSTGRES_ONLY
async def test_two_dispatchers_at_once_queue_every_event_once_and_in_order(
    app: FastAPI, alice: Caller, bob: Caller
) -> None:
    files = [await completed_file(caller, bytes([n])) for n in range(6) for caller in (alice, bob)]
    total = len(await events(app))
    assert total == 4 * len(files)
    settings = app.state.settings
    engines = [create_engine(settings.effective_database_url) for _ in range(2)]
    try:
        dispatchers = [context(app, create_sessionmaker(engine)) for engine in engines]
        counts = [0, 0]

        async def keep_dispatching(index: int) -> None:
            for _ in range(200):  # bounded; each round takes at most 5 events
                done = await dispatch_events(dispatchers[index], batch=5)
                counts[index] += done
                if done == 0 and await undispatched(app) == 0:
                    return
                await asyncio.sleep(0)

        await asyncio.gather(keep_dispatching(0), keep_dispatching(1))
    finally:
        for engine in engines:
            await engine.dispose()

    assert await undispatched(app) == 0
    assert sum(counts) == total  # every event claimed by exactly one dispatcher
    jobs = await jobs_of(app, "webhook")
    expected = total + len(files)  # every event to ALL_URL, the completions to DONE_URL too
    assert len(jobs) == expected
    assert len({j.dedupe_key for j in jobs}) == expected
    for key in {j.ordering_key for j in jobs}:
        event_ids = [
            j.payload["document"]["data"]["event_id"] for j in jobs if j.ordering_key == key
        ]
        assert event_ids == sorted(event_ids), key  # job order follows event order


@POSTGRES_ONLY
async def test_a_file_whose_older_event_another_dispatcher_holds_waits(
    app: FastAPI, alice: Caller, bob: Caller
) -> None:
    held_file = await completed_file(alice)
    other_file = await completed_file(bob)
    recorded = await events(app)
    held = next(e for e in recorded if str(e.file_id) == held_file and e.to_status == "uploaded")

    # Another dispatcher's transaction holds the "uploaded" event of alice's file.
    async with app.state.sessionmaker() as other, other.begin():
        await other.execute(select(FileEvent).where(FileEvent.id == held.id).with_for_update())
        # SKIP LOCKED: it does not wait for the other transaction (bounded, so a wait fails).
        assert await asyncio.wait_for(dispatch_events(context(app)), 10) == 5
        state = {(str(e.file_id), e.to_status): e.dispatched for e in await events(app)}
        assert [state[(held_file, s)] for s in LIFECYCLE] == [True, False, False, False]
        assert [state[(other_file, s)] for s in LIFECYCLE] == [True, True, True, True]

    assert await dispatch_events(context(app)) == 3
    assert await undispatched(app) == 0
    to_all = [
        j.payload["document"]["data"]["to_status"]
        for j in await jobs_of(app, "webhook")
        if j.payload["endpoint"] == ALL_URL and str(j.file_id) == held_file
    ]
    assert to_all == LIFECYCLE
