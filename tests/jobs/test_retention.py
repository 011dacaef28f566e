"""Retention: finished jobs and old file events are deleted, in batches of one statement, and
nothing else is (queued, running and recent jobs; undispatched, recent and busy files' events).

Runs on SQLite and PostgreSQL (the ``registry`` fixture). Statements are counted with an engine
event listener, never timed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from bigupload.expiry import retention
from bigupload.files.models import FileEvent
from bigupload.jobs.models import Job
from tests.conftest import make_settings
from tests.jobs.conftest import Registry
from tests.support.statements import statements_of

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


async def add_job(
    registry: Registry, status: str, *, age: timedelta, finished: timedelta | None = None
) -> int:
    """A job made ``age`` ago, now ``status``, finished ``finished`` ago (if given)."""
    job_id = await registry.enqueue("noop")
    values: dict[str, Any] = {"status": status, "created_at": NOW - age, "run_at": NOW - age}
    if finished is not None:
        values["finished_at"] = NOW - finished
    if status == "running":
        values.update(locked_by="w", locked_until=NOW + DAY)
    async with registry.sessionmaker() as session, session.begin():
        await session.execute(update(Job).where(Job.id == job_id).values(**values))
    return job_id


async def job_ids(registry: Registry) -> set[int]:
    return {job.id for job in await registry.jobs()}


async def add_event(
    registry: Registry, file_id: uuid.UUID, *, age: timedelta, dispatched: bool = True
) -> int:
    async with registry.sessionmaker() as session, session.begin():
        event = FileEvent(
            file_id=file_id,
            owner="alice",
            from_status=None,
            to_status="pending",
            created_at=NOW - age,
            dispatched=dispatched,
        )
        session.add(event)
        await session.flush()
        return event.id


async def event_ids(registry: Registry) -> set[int]:
    async with registry.sessionmaker() as session, session.begin():
        return set((await session.execute(select(FileEvent.id))).scalars())


# -- jobs ---------------------------------------------------------------------------------------


async def test_only_jobs_finished_before_the_retention_are_deleted(registry: Registry) -> None:
    old_done = [await add_job(registry, "done", age=9 * DAY, finished=8 * DAY) for _ in range(3)]
    old_dead = [await add_job(registry, "dead", age=20 * DAY, finished=8 * DAY) for _ in range(2)]
    kept = {
        # finished within the retention, though made long ago
        await add_job(registry, "done", age=30 * DAY, finished=6 * DAY),
        await add_job(registry, "dead", age=9 * DAY, finished=timedelta(hours=1)),
        # never finished, however old
        await add_job(registry, "queued", age=60 * DAY),
        await add_job(registry, "running", age=60 * DAY),
    }
    with statements_of(registry.engine) as seen:
        pruned = await retention.prune_jobs(registry.sessionmaker, NOW - 7 * DAY, batch=2)

    assert pruned == 5
    assert await job_ids(registry) == kept
    assert not kept & {*old_done, *old_dead}
    # 2 + 2 + 1: one DELETE per transaction, the last one short of the batch.
    deletes = seen.starting("DELETE FROM jobs")
    assert len(deletes) == 3
    assert [len(t) for t in seen.transactions] == [1, 1, 1]


async def test_a_multiple_of_the_batch_ends_with_one_empty_delete(registry: Registry) -> None:
    for _ in range(4):
        await add_job(registry, "done", age=9 * DAY, finished=8 * DAY)
    newest = await add_job(registry, "queued", age=DAY)
    with statements_of(registry.engine) as seen:
        assert await retention.prune_jobs(registry.sessionmaker, NOW - 7 * DAY, batch=2) == 4
    assert len(seen.starting("DELETE FROM jobs")) == 3  # 2, 2, 0
    assert await job_ids(registry) == {newest}


async def test_the_newest_job_is_kept_whatever_its_age(registry: Registry) -> None:
    """SQLite numbers a new row one past the largest id left: ids are never given again."""
    first = await add_job(registry, "done", age=9 * DAY, finished=8 * DAY)
    newest = await add_job(registry, "done", age=9 * DAY, finished=8 * DAY)
    assert await retention.prune_jobs(registry.sessionmaker, NOW - 7 * DAY) == 1
    assert await job_ids(registry) == {newest}
    assert first < newest


# -- events -------------------------------------------------------------------------------------


async def test_only_dispatched_old_events_of_idle_files_are_deleted(registry: Registry) -> None:
    idle, busy = uuid.uuid4(), uuid.uuid4()
    gone = [await add_event(registry, idle, age=40 * DAY) for _ in range(3)]
    kept = {
        await add_event(registry, idle, age=40 * DAY, dispatched=False),  # its jobs not queued
        await add_event(registry, busy, age=40 * DAY),  # its file has a job still to run
    }
    gone.append(await add_event(registry, idle, age=31 * DAY))
    kept |= {
        await add_event(registry, idle, age=29 * DAY),  # within the retention
        await add_event(registry, idle, age=40 * DAY),  # made after it: the walk ends before
        await add_event(registry, idle, age=DAY),
    }
    await registry.enqueue("noop", file_id=busy)
    await registry.enqueue("noop", file_id=idle)  # finished below: not busy
    async with registry.sessionmaker() as session, session.begin():
        await session.execute(
            update(Job).where(Job.file_id == idle).values(status="done", finished_at=NOW - DAY)
        )

    with statements_of(registry.engine) as seen:
        pruned = await retention.prune_events(registry.sessionmaker, NOW - 30 * DAY, batch=2)

    assert pruned == 4
    assert await event_ids(registry) == kept
    # Windows of 2 ids until the first event made after the cutoff (the 7th): 4 transactions,
    # each one SELECT of the window and one DELETE (none for the empty last window).
    assert [len(t) for t in seen.transactions] == [2, 2, 2, 1]
    assert len(seen.starting("DELETE FROM file_events")) == 3


async def test_the_newest_event_is_kept_whatever_its_age(registry: Registry) -> None:
    file_id = uuid.uuid4()
    first = await add_event(registry, file_id, age=40 * DAY)
    newest = await add_event(registry, file_id, age=40 * DAY)
    assert await retention.prune_events(registry.sessionmaker, NOW - 30 * DAY) == 1
    assert await event_ids(registry) == {newest}
    assert first < newest


# -- the settings -------------------------------------------------------------------------------


async def test_prune_uses_the_settings_and_off_keeps_everything(registry: Registry) -> None:
    old_job = await add_job(registry, "done", age=9 * DAY, finished=8 * DAY)
    await add_job(registry, "queued", age=DAY)
    old_event = await add_event(registry, uuid.uuid4(), age=40 * DAY)
    await add_event(registry, uuid.uuid4(), age=DAY)

    off = make_settings(registry.tmp_path, registry.url, job_retention="off", event_retention=0)
    with statements_of(registry.engine) as seen:
        assert await retention.prune(registry.sessionmaker, off, NOW) == (0, 0)
    assert seen.all == []

    week = make_settings(registry.tmp_path, registry.url, job_retention="7d")
    assert (week.job_retention, week.event_retention) == (7 * 86400, 30 * 86400)
    assert await retention.prune(registry.sessionmaker, week, NOW) == (1, 1)
    assert old_job not in await job_ids(registry)
    assert old_event not in await event_ids(registry)
