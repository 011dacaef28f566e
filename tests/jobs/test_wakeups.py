"""Wake-ups: on PostgreSQL a commit that queues jobs (or appends file events) NOTIFYs every
process, whose runners LISTEN on a connection of their own; in this process the commit wakes
the runners directly, on every database.

The runners here poll every hour at most (``job_notify_poll_interval``), so a job they run
within the bound of a test was found by a wake-up. Runners of other processes are real
processes (tests/jobs/job_worker.py); the listener is also driven alone, to see exactly which
notifications arrive. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from bigupload import clock
from bigupload.config import Settings
from bigupload.files.inserter import FileInserter
from bigupload.files.models import FileEvent
from bigupload.jobs.kinds import JobContext, JobKind, Periodic, PeriodicContext
from bigupload.jobs.queue import enqueue
from bigupload.jobs.runner import JobRunner
from bigupload.jobs.wakeups import APPLICATION_NAME, CHANNEL, EVENTS, JOBS, Listener
from bigupload.storage.local import LocalStorage
from bigupload.uploads.service import new_record
from tests.jobs.conftest import LogRecords, Registry, eventually
from tests.jobs.test_processes import POSTGRES_ONLY, until, workers_on
from tests.support.statements import statements_of

#: Long enough that no test here could pass by polling.
HOUR = "3600"


async def listener_pids(registry: Registry) -> list[int]:
    """The backends of this database that LISTEN (idle after their ``LISTEN``)."""
    async with registry.engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = :name AND state = 'idle' AND query LIKE 'LISTEN%'"
            ),
            {"name": APPLICATION_NAME},
        )
        return [int(row[0]) for row in rows]


async def no_listener(registry: Registry) -> bool:
    return not await listener_pids(registry)


async def nothing(ctx: JobContext) -> None:
    return None


async def effects(registry: Registry, count: int) -> bool:
    return len(await registry.effects()) >= count


async def effects_of(registry: Registry, job_id: int) -> bool:
    return any(done == job_id for done, _ in await registry.effects())


def listener(registry: Registry, received: list[str]) -> Listener:
    """A listener that hears this process's notifications too, as another process would."""
    return Listener(
        registry.engine, received.append, name="test", check_interval=3600, own_too=True
    )


# -- across processes (PostgreSQL) -------------------------------------------------------------


@POSTGRES_ONLY
async def test_a_job_queued_in_another_process_wakes_its_runner_at_once(
    registry: Registry,
) -> None:
    with workers_on(registry) as workers:
        worker = workers.spawn(
            "a", BIGUPLOAD_JOB_POLL_INTERVAL="60", BIGUPLOAD_JOB_NOTIFY_POLL_INTERVAL=HOUR
        )
        await until(lambda: listener_pids(registry), "the worker listening", workers, worker)
        for done in range(1, 4):  # each wakes it again
            await registry.enqueue("effect")
            await until(lambda n=done: effects(registry, n), "the job done", workers, worker)
        assert len(await registry.effects()) == 3


@POSTGRES_ONLY
async def test_a_job_due_later_runs_when_due_though_the_runner_listens(
    registry: Registry,
) -> None:
    """Woken by the enqueue, the runner finds the job not due yet, and waits until it is (not
    until the next poll): the same for a retry's backoff and a lease to take over."""
    with workers_on(registry) as workers:
        worker = workers.spawn(
            "a", BIGUPLOAD_JOB_POLL_INTERVAL="60", BIGUPLOAD_JOB_NOTIFY_POLL_INTERVAL=HOUR
        )
        await until(lambda: listener_pids(registry), "the worker listening", workers, worker)
        job_id = await registry.enqueue("effect", run_at=clock.now() + timedelta(seconds=0.5))
        await until(lambda: effects_of(registry, job_id), "the job done", workers, worker)


@POSTGRES_ONLY
async def test_with_notify_off_a_runner_of_another_process_polls(registry: Registry) -> None:
    with workers_on(registry) as workers:
        worker = workers.spawn("a", BIGUPLOAD_JOB_NOTIFY="off")
        await until(lambda: worker.pid in workers.ready(), "the worker ready", workers, worker)
        job_id = await registry.enqueue("effect")
        await until(lambda: effects_of(registry, job_id), "the job done", workers, worker)
        assert await listener_pids(registry) == []


# -- the listener (PostgreSQL) -----------------------------------------------------------------


@POSTGRES_ONLY
async def test_a_rolled_back_enqueue_notifies_nobody(registry: Registry) -> None:
    received: list[str] = []
    listening = listener(registry, received)
    listening.start()
    try:
        await asyncio.wait_for(listening.wait_up(), 30)
        assert received == [JOBS, EVENTS]  # on connecting: look for what came before
        received.clear()
        async with registry.sessionmaker() as session:
            await enqueue(session, "effect", max_attempts=1)
            await session.rollback()
        await registry.enqueue("effect")
        # Notifications arrive in commit order: the rolled-back one would have come first.
        await eventually(lambda: received, "the committed job's notification")
        assert received == [JOBS]
        assert len(await registry.jobs()) == 1
    finally:
        await listening.stop()


@POSTGRES_ONLY
async def test_committed_file_events_notify_the_dispatchers(registry: Registry) -> None:
    received: list[str] = []
    listening = listener(registry, received)
    listening.start()
    try:
        await asyncio.wait_for(listening.wait_up(), 30)
        received.clear()
        async with registry.sessionmaker() as session, session.begin():
            session.add(
                FileEvent(
                    file_id=uuid.uuid4(), owner="o", to_status="uploaded", created_at=clock.now()
                )
            )
        await eventually(lambda: received, "the events' notification")
        assert received == [EVENTS]
    finally:
        await listening.stop()


@POSTGRES_ONLY
async def test_the_listener_reconnects_after_its_connection_is_terminated(
    registry: Registry, job_logs: LogRecords
) -> None:
    received: list[str] = []
    listening = listener(registry, received)
    listening.start()
    try:
        await asyncio.wait_for(listening.wait_up(), 30)
        [pid] = await eventually(lambda: listener_pids(registry), "the listener's backend")
        async with registry.engine.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await eventually(lambda: listening.connections == 2 and listening.up, "a reconnection")
        received.clear()
        await registry.enqueue("effect")
        await eventually(lambda: received, "a notification on the new connection")
        assert received == [JOBS]
        lost = [r for r in job_logs.at(logging.WARNING) if "not listening" in r.getMessage()]
        back = [r for r in job_logs.at(logging.INFO) if "listening for new jobs again" in r.message]
        assert len(lost) == 1 and len(back) == 1
    finally:
        await listening.stop()


@POSTGRES_ONLY
async def test_a_runner_listens_unless_notify_is_off(registry: Registry) -> None:
    on = registry.runner([JobKind("test", nothing)], job_notify_poll_interval=3600)
    off = registry.runner([JobKind("test", nothing)], job_notify="off")
    await on.start()
    await off.start()
    await eventually(lambda: on.listening, "the runner listening")
    assert len(await eventually(lambda: listener_pids(registry), "its backend")) == 1
    assert not off.listening
    await on.stop()
    assert not on.listening
    await eventually(lambda: no_listener(registry), "its backend gone")


@POSTGRES_ONLY
async def test_a_runner_skips_the_notifications_of_its_own_process(registry: Registry) -> None:
    """Its own commits woke it already: hearing them again by NOTIFY would run the dispatcher
    twice per new file. Another process's still wake it."""
    runner, _ = await dispatcher_started(registry, job_notify="auto", job_notify_poll_interval=3600)
    await eventually(lambda: runner.listening, "the runner listening")
    assert runner._listener is not None
    heard: list[str] = []
    notify = runner._listener.notify

    def recorded(payload: str) -> None:
        heard.append(payload)
        notify(payload)

    runner._listener.notify = recorded
    async with registry.sessionmaker() as session, session.begin():
        session.add(
            FileEvent(file_id=uuid.uuid4(), owner="o", to_status="uploaded", created_at=clock.now())
        )
    # Another process's notification, sent after: they arrive in commit order, so once it is
    # heard, this process's own was delivered before it (and skipped).
    async with registry.engine.begin() as connection:
        await connection.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": "jobs@another-process"},
        )
    await eventually(lambda: heard, "the other process's notification")
    assert heard == [JOBS]


# -- in this process (SQLite and PostgreSQL) ---------------------------------------------------


async def dispatcher_started(
    registry: Registry, gap: Callable[[Settings], float] | None = None, **settings: Any
) -> tuple[JobRunner, list[int]]:
    """A runner whose only periodic stands for the dispatcher (woken by new events, else once
    an hour; ``gap`` as ``Periodic.gap``), started and past its first run; and the list its runs
    are appended to. It does not listen unless ``settings`` say so: on PostgreSQL its connecting
    runs the periodic too."""
    runs: list[int] = []

    async def dispatch(ctx: PeriodicContext) -> int:
        runs.append(len(runs))
        return 0

    periodic = Periodic(
        name="dispatch-test",
        interval=lambda _s: 3600.0,
        run=dispatch,
        notified_by=EVENTS,
        gap=gap,
    )
    runner = registry.runner(
        periodics=[periodic], job_poll_interval=60, **({"job_notify": "off"} | settings)
    )
    await runner.start()
    await eventually(lambda: runs, "the first run, at start")
    return runner, runs


async def test_committed_file_events_run_the_dispatcher_at_once(registry: Registry) -> None:
    _, runs = await dispatcher_started(registry)
    async with registry.sessionmaker() as session, session.begin():
        session.add(
            FileEvent(file_id=uuid.uuid4(), owner="o", to_status="uploaded", created_at=clock.now())
        )
    await eventually(lambda: len(runs) == 2, "a run for the new event")


async def test_a_new_files_first_event_runs_the_dispatcher_at_once(registry: Registry) -> None:
    """The group-commit inserter writes on a plain connection, with no session to hook: it
    announces its events itself (and, on PostgreSQL, to every process in its transaction)."""
    _, runs = await dispatcher_started(registry)
    record = new_record(
        "o",
        LocalStorage(registry.tmp_path / "store", public_url="http://t", secret="s" * 32),
        filename="a.bin",
        content_type="application/octet-stream",
        size=1,
        metadata={},
    )
    with statements_of(registry.engine) as seen:
        await FileInserter(registry.sessionmaker).insert(record)
    # On PostgreSQL, the batch's one statement (its own transaction) ends in the notify.
    notifies = [s for s in seen.all if "SELECT pg_notify(" in s]
    assert len(notifies) == (1 if registry.engine.dialect.name == "postgresql" else 0)
    assert all(s.startswith("WITH ") and "INSERT INTO file_events" in s for s in notifies)
    if notifies:
        # The payload: events, for the dispatchers, from this process.
        assert seen.executed[-1][1][-1].partition("@")[0] == EVENTS
    await eventually(lambda: len(runs) == 2, "a run for the new file's event")


async def test_new_file_events_run_the_dispatcher_and_look_for_no_jobs(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every create commits a file event: waking the dispatcher must not also make the runner
    claim (two statements, and on PostgreSQL a look for the next due job) when no job was
    queued. Jobs are still looked for when asked."""
    runner, runs = await dispatcher_started(registry)
    claims: list[str] = []
    phase = "events"
    claim = runner._claim

    async def counted_claim(limit: int) -> Any:
        claims.append(phase)
        return await claim(limit)

    monkeypatch.setattr(runner, "_claim", counted_claim)
    async with registry.sessionmaker() as session, session.begin():
        session.add(
            FileEvent(file_id=uuid.uuid4(), owner="o", to_status="uploaded", created_at=clock.now())
        )
    await eventually(lambda: len(runs) == 2, "a run for the new event")
    phase = "wake"
    runner.wake()
    await eventually(lambda: claims != [], "the claim wake asked for")
    assert claims == ["wake"]


async def test_a_burst_of_events_within_the_gap_takes_one_run_after_it(
    registry: Registry,
) -> None:
    """A create commits an event and wakes the dispatcher: under load, one round per create
    cost as much CPU as the create. Within its gap the dispatcher is only marked as wanted."""
    gap = [3600.0]
    runner, runs = await dispatcher_started(registry, gap=lambda _s: gap[0])
    for _ in range(50):
        runner.notified(EVENTS)
    rounds = runner.stats.rounds
    runner.wake()  # a round of the loop, in which it would have started the dispatcher
    await eventually(lambda: runner.stats.rounds > rounds, "another round")
    assert runs == [0]
    gap[0] = 0.0
    runner.wake()
    await eventually(lambda: len(runs) == 2, "one run for the 50 wake-ups")
    rounds = runner.stats.rounds
    runner.wake()
    await eventually(lambda: runner.stats.rounds > rounds, "another round")
    assert runs == [0, 1]


async def test_a_wake_up_within_the_gap_runs_when_the_gap_ends(registry: Registry) -> None:
    """Nothing else wakes the loop (its poll interval is a minute): the gap's end must."""
    _, runs = await dispatcher_started(registry, gap=lambda _s: 0.2)
    for expected in (2, 3, 4):
        async with registry.sessionmaker() as session, session.begin():
            session.add(
                FileEvent(
                    file_id=uuid.uuid4(), owner="o", to_status="uploaded", created_at=clock.now()
                )
            )
        await eventually(lambda n=expected: len(runs) == n, "a run after the gap")  # type: ignore[misc]


async def test_a_rolled_back_file_event_runs_nothing(registry: Registry) -> None:
    runner, runs = await dispatcher_started(registry)
    async with registry.sessionmaker() as session:
        session.add(
            FileEvent(file_id=uuid.uuid4(), owner="o", to_status="uploaded", created_at=clock.now())
        )
        await session.flush()
        await session.rollback()
    rounds = runner.stats.rounds
    runner.wake()  # a round that would run it, were it due
    await eventually(lambda: runner.stats.rounds > rounds, "another round")
    assert len(runs) == 1
