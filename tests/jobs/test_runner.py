"""The job runner in one process: outcomes, retries, leases, ordering, concurrency, waking up.

Time is the test's clock (``test_clock``): backoffs and leases pass when the test moves it, never
by waiting. Where two workers compete, they are two runners with their own worker ids on the
same registry; one is held inside its handler by an event while the other acts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest

from bigupload.jobs.kinds import GiveUp, JobContext, JobKind, LeaseLost, Retry, exponential_backoff
from bigupload.jobs.models import JobStatus
from bigupload.jobs.queue import ENQUEUED, enqueue
from bigupload.jobs.runner import ERROR_MAX_BYTES, JobRunner, default_worker_id, describe
from tests.jobs.conftest import LogRecords, Registry, add_effect, eventually
from tests.support.clock import Clock

LEASE = 300.0  # the default job_lease_seconds


class Recorder:
    """A handler that records its calls and does what the test scripted for each attempt."""

    def __init__(self, *script: BaseException | None) -> None:
        self.script = list(script)
        self.calls: list[tuple[int, int, str]] = []  # (job id, attempt, worker)
        self.give_ups: list[tuple[int, str]] = []

    async def run(self, ctx: JobContext) -> None:
        self.calls.append((ctx.job_id, ctx.attempt, ctx.worker_id))
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome

    async def give_up(self, ctx: JobContext, reason: str) -> None:
        self.give_ups.append((ctx.job_id, reason))

    def kind(self, name: str = "test", **kw: Any) -> JobKind:
        return JobKind(name, self.run, give_up=self.give_up, **kw)


# -- enqueue and the happy path ---------------------------------------------------------------


async def test_enqueue_with_a_dedupe_key_adds_one_job(registry: Registry) -> None:
    async with registry.sessionmaker() as session, session.begin():
        assert await enqueue(session, "test", {"n": 1}, max_attempts=3, dedupe_key="k")
        assert session.info.get(ENQUEUED) is True
    async with registry.sessionmaker() as session, session.begin():
        assert not await enqueue(session, "test", {"n": 2}, max_attempts=3, dedupe_key="k")
        assert ENQUEUED not in session.info  # nothing added: nobody needs waking
    jobs = await registry.jobs()
    assert [(j.kind, j.payload, j.dedupe_key, j.status) for j in jobs] == [
        ("test", {"n": 1}, "k", JobStatus.QUEUED)
    ]


async def test_a_job_runs_once_and_is_done(registry: Registry, test_clock: Clock) -> None:
    seen: list[JobContext] = []

    async def returns(ctx: JobContext) -> None:
        seen.append(ctx)

    async def finishes(ctx: JobContext) -> None:
        seen.append(ctx)
        async with ctx.sessionmaker() as session, session.begin():
            await add_effect(session, ctx)
            await ctx.finish(session, {"answer": 42})

    file_id = uuid.uuid4()
    first = await registry.enqueue("returns", {"a": 1}, file_id=file_id, owner="alice")
    second = await registry.enqueue("finishes", max_attempts=2)
    runner = registry.runner([JobKind("returns", returns), JobKind("finishes", finishes)])

    assert await runner.run_until_idle() == 2
    assert await runner.run_until_idle() == 0

    by_id = {ctx.job_id: ctx for ctx in seen}
    assert sorted(by_id) == [first, second] and len(seen) == 2
    ctx = by_id[first]
    assert (ctx.kind, ctx.payload) == ("returns", {"a": 1})
    assert (ctx.file_id, ctx.owner) == (file_id, "alice")
    assert (ctx.attempt, ctx.max_attempts, ctx.worker_id) == (1, 5, runner.worker_id)
    for job_id, result in ((first, None), (second, {"answer": 42})):
        job = await registry.job(job_id)
        assert job.status == JobStatus.DONE
        assert job.attempts == 1
        assert job.result == result
        assert job.finished_at == test_clock.current
        assert (job.locked_by, job.locked_until, job.last_error) == (None, None, None)
    assert await registry.effects() == [(second, runner.worker_id)]


async def test_only_the_runners_own_kinds_and_only_due_jobs_are_claimed(
    registry: Registry, test_clock: Clock
) -> None:
    recorder = Recorder()
    other = await registry.enqueue("other")
    later = await registry.enqueue("test", run_at=test_clock.current + timedelta(seconds=10))
    runner = registry.runner([recorder.kind()])

    assert await runner.run_until_idle() == 0
    test_clock.advance(10)
    assert await runner.run_until_idle() == 1
    assert recorder.calls == [(later, 1, runner.worker_id)]
    assert (await registry.job(other)).status == JobStatus.QUEUED


def test_worker_ids_fit_the_column() -> None:
    assert len(default_worker_id()) <= 64
    assert default_worker_id() != default_worker_id()
    with pytest.raises(ValueError, match="64"):
        JobRunner(sessionmaker=None, storage=None, settings=None, kinds={}, worker_id="w" * 65)  # type: ignore[arg-type]


# -- failures -----------------------------------------------------------------------------------


def test_exponential_backoff_doubles_up_to_the_cap() -> None:
    assert [exponential_backoff(n) for n in range(1, 7)] == [2, 4, 8, 16, 32, 64]
    assert exponential_backoff(0) == 2
    assert exponential_backoff(30) == 3600
    assert exponential_backoff(3, base=1.5, cap=5) == 5
    assert exponential_backoff(2, base=1.5) == 3


def test_errors_are_described_by_type_and_cut_to_2_kib() -> None:
    assert describe(RuntimeError("boom")) == "RuntimeError: boom"
    assert describe(ValueError()) == "ValueError"
    long = describe(RuntimeError("é" * 5000))
    assert len(long.encode()) <= ERROR_MAX_BYTES
    assert long.startswith("RuntimeError: éé") and long.endswith("...")


async def test_retry_waits_for_its_backoff(registry: Registry, test_clock: Clock) -> None:
    recorder = Recorder(Retry("receiver said 503", result={"status": 503}), None)
    job_id = await registry.enqueue("test")
    runner = registry.runner([recorder.kind(backoff=lambda attempt: 100.0 * attempt)])

    assert await runner.run_until_idle() == 1
    job = await registry.job(job_id)
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
    assert job.last_error == "Retry: receiver said 503"
    assert job.result == {"status": 503}
    assert (job.locked_by, job.locked_until) == (None, None)
    delay = (job.run_at - test_clock.current).total_seconds()
    assert 80 <= delay <= 120  # 100 s, give or take the 20 % jitter

    test_clock.advance(79)
    assert await runner.run_until_idle() == 0
    assert (await registry.job(job_id)).status == JobStatus.QUEUED
    test_clock.advance(42)
    assert await runner.run_until_idle() == 1
    job = await registry.job(job_id)
    assert (job.status, job.attempts) == (JobStatus.DONE, 2)
    assert [attempt for _, attempt, _ in recorder.calls] == [1, 2]
    assert recorder.give_ups == []


async def test_retry_after_overrides_the_backoff(registry: Registry, test_clock: Clock) -> None:
    recorder = Recorder(Retry("rate limited", after=10.0))
    job_id = await registry.enqueue("test")
    runner = registry.runner([recorder.kind(backoff=lambda attempt: 1000.0)])

    assert await runner.run_until_idle() == 1
    delay = ((await registry.job(job_id)).run_at - test_clock.current).total_seconds()
    assert 8 <= delay <= 12
    test_clock.advance(12)
    assert await runner.run_until_idle() == 1
    assert (await registry.job(job_id)).status == JobStatus.DONE


async def test_out_of_attempts_the_job_is_dead_and_given_up_once(
    registry: Registry, test_clock: Clock, job_logs: LogRecords
) -> None:
    recorder = Recorder(*(RuntimeError(f"boom {n}") for n in range(1, 10)))
    job_id = await registry.enqueue("test", max_attempts=3)
    runner = registry.runner([recorder.kind()])

    for _ in range(5):
        await runner.run_until_idle()
        test_clock.advance(3600 * 1.2)  # past any backoff

    assert [attempt for _, attempt, _ in recorder.calls] == [1, 2, 3]
    assert recorder.give_ups == [(job_id, "RuntimeError: boom 3 (3 attempts)")]
    job = await registry.job(job_id)
    assert (job.status, job.attempts) == (JobStatus.DEAD, 3)
    assert job.last_error == "RuntimeError: boom 3"
    assert job.finished_at is not None
    assert (job.locked_by, job.locked_until) == (None, None)
    retries = [r for r in job_logs.at(logging.WARNING) if "retry in" in r.getMessage()]
    deaths = [r for r in job_logs.at(logging.ERROR) if "dead" in r.getMessage()]
    assert len(retries) == 2 and len(deaths) == 1
    assert all(r.exc_info is not None for r in retries + deaths)  # with the traceback
    assert f"job {job_id} (test) dead: attempt 3/3" in deaths[0].getMessage()


async def test_give_up_is_dead_at_once(registry: Registry) -> None:
    recorder = Recorder(GiveUp("declared PDF is not a PDF", result={"detected": "image/png"}))
    job_id = await registry.enqueue("test", max_attempts=5)
    runner = registry.runner([recorder.kind()])

    assert await runner.run_until_idle() == 1
    assert await runner.run_until_idle() == 0
    job = await registry.job(job_id)
    assert (job.status, job.attempts) == (JobStatus.DEAD, 1)
    assert job.last_error == "GiveUp: declared PDF is not a PDF"
    assert job.result == {"detected": "image/png"}
    assert recorder.give_ups == [(job_id, "declared PDF is not a PDF")]


async def test_a_failing_give_up_hook_is_logged_and_the_job_still_dead(
    registry: Registry, job_logs: LogRecords
) -> None:
    async def fails(ctx: JobContext) -> None:
        raise GiveUp("no")

    async def hook_fails(ctx: JobContext, reason: str) -> None:
        raise RuntimeError("hook broke")

    dead = await registry.enqueue("test")
    after = await registry.enqueue("fine")
    ran: list[int] = []

    async def fine(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    runner = registry.runner(
        [JobKind("test", fails, give_up=hook_fails), JobKind("fine", fine)], job_concurrency=1
    )
    assert await runner.run_until_idle() == 2
    assert (await registry.job(dead)).status == JobStatus.DEAD
    assert ran == [after]
    failed = [r for r in job_logs.at(logging.ERROR) if "give_up hook failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None


# -- leases --------------------------------------------------------------------------------------


class Held:
    """A handler held inside by the named workers until the test releases each, that then
    writes its effect and finishes in one transaction. Other workers go straight through."""

    def __init__(self, *held_workers: str) -> None:
        self.inside = {worker: asyncio.Event() for worker in held_workers}
        self.release = {worker: asyncio.Event() for worker in held_workers}
        self.lost: list[int] = []
        self.give_ups: list[str] = []

    async def run(self, ctx: JobContext) -> None:
        if ctx.worker_id in self.inside:
            self.inside[ctx.worker_id].set()
            await self.release[ctx.worker_id].wait()
        async with ctx.sessionmaker() as session, session.begin():
            await add_effect(session, ctx)
            try:
                await ctx.finish(session, {"by": ctx.worker_id})
            except LeaseLost:
                self.lost.append(ctx.attempt)
                raise

    async def give_up(self, ctx: JobContext, reason: str) -> None:
        self.give_ups.append(reason)


async def test_a_job_is_taken_over_after_its_lease_and_the_loser_rolls_back(
    registry: Registry, test_clock: Clock
) -> None:
    held = Held("first", "second")
    job_id = await registry.enqueue("test", max_attempts=3)
    first = registry.runner([JobKind("test", held.run)], worker_id="first")
    second = registry.runner([JobKind("test", held.run)], worker_id="second")

    running_first = asyncio.create_task(first.run_until_idle())
    await asyncio.wait_for(held.inside["first"].wait(), 30)
    job = await registry.job(job_id)
    assert (job.status, job.locked_by, job.attempts) == (JobStatus.RUNNING, "first", 1)
    assert await second.run_until_idle() == 0  # the lease still holds

    # The first worker stalls past its lease: the second takes the job over.
    assert job.locked_until is not None
    test_clock.current = job.locked_until + timedelta(seconds=1)
    running_second = asyncio.create_task(second.run_until_idle())
    await asyncio.wait_for(held.inside["second"].wait(), 30)

    # The first wakes up while the second is still at work: its finish raises LeaseLost and
    # what it wrote in the same transaction is rolled back; the second's state is untouched.
    held.release["first"].set()
    assert await asyncio.wait_for(running_first, 30) == 1
    assert held.lost == [1]
    assert await registry.effects() == []
    job = await registry.job(job_id)
    assert (job.status, job.locked_by, job.attempts) == (JobStatus.RUNNING, "second", 2)
    assert job.last_error is None
    assert first.stats.lease_lost == 1 and first.stats.done == 0

    held.release["second"].set()
    assert await asyncio.wait_for(running_second, 30) == 1
    assert await registry.effects() == [(job_id, "second")]
    job = await registry.job(job_id)
    assert (job.status, job.attempts, job.result) == (JobStatus.DONE, 2, {"by": "second"})
    assert second.stats.done == 1


async def test_a_worker_that_lost_its_job_records_no_failure(
    registry: Registry, test_clock: Clock
) -> None:
    """The loser's retry is conditional too: it must not requeue the new owner's job."""
    inside = {"first": asyncio.Event(), "second": asyncio.Event()}
    release = {"first": asyncio.Event(), "second": asyncio.Event()}

    async def run(ctx: JobContext) -> None:
        inside[ctx.worker_id].set()
        await release[ctx.worker_id].wait()
        if ctx.worker_id == "first":
            raise RuntimeError("late failure")

    job_id = await registry.enqueue("test")
    first = registry.runner([JobKind("test", run)], worker_id="first")
    second = registry.runner([JobKind("test", run)], worker_id="second")
    running_first = asyncio.create_task(first.run_until_idle())
    await asyncio.wait_for(inside["first"].wait(), 30)
    test_clock.advance(LEASE + 1)
    running_second = asyncio.create_task(second.run_until_idle())
    await asyncio.wait_for(inside["second"].wait(), 30)

    release["first"].set()
    await asyncio.wait_for(running_first, 30)
    job = await registry.job(job_id)
    assert (job.status, job.locked_by, job.attempts) == (JobStatus.RUNNING, "second", 2)
    assert job.last_error is None
    assert first.stats.lease_lost == 1 and first.stats.retried == 0

    release["second"].set()
    await asyncio.wait_for(running_second, 30)
    job = await registry.job(job_id)
    assert (job.status, job.attempts, job.last_error) == (JobStatus.DONE, 2, None)


async def test_a_job_whose_worker_stopped_at_its_last_attempt_is_given_up(
    registry: Registry, test_clock: Clock
) -> None:
    held = Held("first")
    job_id = await registry.enqueue("test", max_attempts=1)
    kind = JobKind("test", held.run, give_up=held.give_up)
    first = registry.runner([kind], worker_id="first")
    second = registry.runner([kind], worker_id="second")

    running = asyncio.create_task(first.run_until_idle())
    await asyncio.wait_for(held.inside["first"].wait(), 30)
    test_clock.advance(LEASE + 1)
    assert await second.run_until_idle() == 0  # not run again: given up
    job = await registry.job(job_id)
    assert (job.status, job.attempts) == (JobStatus.DEAD, 1)
    assert job.last_error == "the worker running it stopped (1 attempts)"
    assert held.give_ups == ["the worker running it stopped (1 attempts)"]

    held.release["first"].set()
    await asyncio.wait_for(running, 30)
    assert held.lost == [1]
    assert await registry.effects() == []
    assert (await registry.job(job_id)).status == JobStatus.DEAD


async def test_the_heartbeat_keeps_a_long_job_leased(registry: Registry, test_clock: Clock) -> None:
    held = Held("first")
    job_id = await registry.enqueue("test")
    first = registry.runner([JobKind("test", held.run)], worker_id="first", job_lease_seconds=1)
    second = registry.runner([JobKind("test", held.run)], worker_id="second", job_lease_seconds=1)

    running = asyncio.create_task(first.run_until_idle())
    await asyncio.wait_for(held.inside["first"].wait(), 30)
    claimed_until = (await registry.job(job_id)).locked_until
    assert claimed_until is not None
    test_clock.advance(30)

    async def extended() -> bool:
        until = (await registry.job(job_id)).locked_until
        return until is not None and until > claimed_until

    await eventually(extended, "the heartbeat to extend the lease")
    assert await second.run_until_idle() == 0  # past the first lease, not past the extension
    held.release["first"].set()
    assert await asyncio.wait_for(running, 30) == 1
    assert await registry.effects() == [(job_id, "first")]
    assert held.lost == []


async def test_a_heartbeat_that_finds_the_lease_lost_says_so(
    registry: Registry, test_clock: Clock, job_logs: LogRecords
) -> None:
    held = Held("first", "second")
    job_id = await registry.enqueue("test")
    first = registry.runner([JobKind("test", held.run)], worker_id="first", job_lease_seconds=1)
    second = registry.runner([JobKind("test", held.run)], worker_id="second")
    running_first = asyncio.create_task(first.run_until_idle())
    await asyncio.wait_for(held.inside["first"].wait(), 30)
    test_clock.advance(LEASE)
    running_second = asyncio.create_task(second.run_until_idle())
    await asyncio.wait_for(held.inside["second"].wait(), 30)

    def warned() -> bool:
        return any(
            f"job {job_id} (test): attempt 1 lost its lease while running" in r.getMessage()
            for r in job_logs.at(logging.WARNING)
        )

    await eventually(warned, "the first worker's heartbeat to notice")
    for worker in ("first", "second"):
        held.release[worker].set()
    await asyncio.wait_for(asyncio.gather(running_first, running_second), 30)
    assert held.lost == [1]
    assert await registry.effects() == [(job_id, "second")]


async def test_stop_cancels_a_running_job_and_gives_it_back_for_another_worker(
    registry: Registry, test_clock: Clock
) -> None:
    held = Held("first")
    job_id = await registry.enqueue("test")
    first = registry.runner([JobKind("test", held.run)], worker_id="first")
    second = registry.runner([JobKind("test", held.run)], worker_id="second")

    await first.start()
    await asyncio.wait_for(held.inside["first"].wait(), 30)
    await first.stop(timeout=0.05)
    job = await registry.job(job_id)
    assert (job.status, job.locked_by, job.attempts) == (JobStatus.QUEUED, None, 1)  # released
    assert job.last_error == "Stopped: worker first stopped during the attempt"

    assert await second.run_until_idle() == 1  # at once, not after the lease
    job = await registry.job(job_id)
    assert (job.status, job.attempts) == (JobStatus.DONE, 2)
    assert await registry.effects() == [(job_id, "second")]


# -- ordering -----------------------------------------------------------------------------------


async def test_jobs_with_one_ordering_key_run_one_at_a_time_in_order(
    registry: Registry, test_clock: Clock
) -> None:
    recorder = Recorder()
    failures = {"first-a": [Retry("not yet"), None], "first-b": [GiveUp("never")]}
    ids: dict[str, int] = {}

    async def run(ctx: JobContext) -> None:
        name = ctx.payload["name"]
        recorder.calls.append((ctx.job_id, ctx.attempt, name))
        script = failures.get(name, [])
        outcome = script.pop(0) if script else None
        if outcome is not None:
            raise outcome

    for name, key in [
        ("first-a", "a"),
        ("second-a", "a"),
        ("first-b", "b"),
        ("second-b", "b"),
        ("free", None),
    ]:
        ids[name] = await registry.enqueue("test", {"name": name}, ordering_key=key)
    runner = registry.runner([JobKind("test", run, backoff=lambda n: 60.0)])

    assert await runner.run_until_idle() == 4
    ran = [name for _, _, name in recorder.calls]
    # first-a failed and waits to be retried: second-a waits behind it. first-b is dead: a dead
    # job blocks nothing, so second-b ran after it.
    assert sorted(ran) == ["first-a", "first-b", "free", "second-b"]
    assert ran.index("first-b") < ran.index("second-b")
    assert (await registry.job(ids["second-a"])).attempts == 0

    test_clock.advance(100)
    assert await runner.run_until_idle() == 2
    assert [name for _, _, name in recorder.calls[4:]] == ["first-a", "second-a"]
    statuses = {name: (await registry.job(job_id)).status for name, job_id in ids.items()}
    assert statuses == {
        "first-a": JobStatus.DONE,
        "second-a": JobStatus.DONE,
        "first-b": JobStatus.DEAD,
        "second-b": JobStatus.DONE,
        "free": JobStatus.DONE,
    }


async def test_a_running_job_holds_back_the_next_of_its_key(
    registry: Registry, test_clock: Clock
) -> None:
    held = Held("first")
    first_job = await registry.enqueue("test", ordering_key="k")
    second_job = await registry.enqueue("test", ordering_key="k")
    first = registry.runner([JobKind("test", held.run)], worker_id="first")
    second = registry.runner([JobKind("test", held.run)], worker_id="second")

    running = asyncio.create_task(first.run_until_idle())
    await asyncio.wait_for(held.inside["first"].wait(), 30)
    assert await second.run_until_idle() == 0
    assert (await registry.job(second_job)).attempts == 0
    held.release["first"].set()
    await asyncio.wait_for(running, 30)
    # first.run_until_idle took the second job in its next round, once the first was done.
    assert await registry.effects() == [(first_job, "first"), (second_job, "first")]


# -- concurrency --------------------------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.total = 0
        self.gate = asyncio.Event()

    async def run(self, ctx: JobContext) -> None:
        self.now += 1
        self.total += 1
        self.peak = max(self.peak, self.now)
        try:
            for _ in range(20):  # let the other claimed jobs start before this one ends
                await asyncio.sleep(0)
            await self.gate.wait()
        finally:
            self.now -= 1


async def test_run_until_idle_runs_up_to_the_concurrency_at_once(registry: Registry) -> None:
    counter = Counter()
    counter.gate.set()
    for _ in range(10):
        await registry.enqueue("test")
    runner = registry.runner([JobKind("test", counter.run)], job_concurrency=3)

    assert await runner.run_until_idle() == 10
    assert counter.peak == 3
    assert {j.status for j in await registry.jobs()} == {JobStatus.DONE}


async def test_the_background_loop_never_runs_more_than_the_concurrency(
    registry: Registry,
) -> None:
    counter = Counter()
    for _ in range(10):
        await registry.enqueue("test")
    runner = registry.runner(  # polling: rounds come without wake-ups
        [JobKind("test", counter.run)], job_concurrency=3, job_poll_interval=0.01, job_notify="off"
    )
    await runner.start()
    await eventually(lambda: counter.now == 3, "three jobs running")
    rounds = runner.stats.rounds
    runner.wake()
    await eventually(lambda: runner.stats.rounds >= rounds + 3, "more rounds of the loop")
    assert counter.now == 3 and counter.total == 3
    running = [j for j in await registry.jobs() if j.status == JobStatus.RUNNING]
    assert len(running) == 3

    counter.gate.set()

    async def all_done() -> bool:
        return {j.status for j in await registry.jobs()} == {JobStatus.DONE}

    await eventually(all_done, "every job done")
    assert counter.peak == 3 and counter.total == 10


# -- waking up ----------------------------------------------------------------------------------


async def test_a_committed_job_wakes_the_runner(registry: Registry) -> None:
    done = asyncio.Event()

    async def run(ctx: JobContext) -> None:
        done.set()

    runner = registry.runner([JobKind("test", run)], job_poll_interval=60)
    await runner.start()
    await eventually(lambda: runner.stats.rounds >= 1, "the first round")  # now asleep for 60 s
    async with registry.sessionmaker() as session, session.begin():
        await enqueue(session, "test", max_attempts=1)
    await asyncio.wait_for(done.wait(), 30)  # well before the next poll
    assert runner.stats.rounds >= 2


async def test_a_rolled_back_enqueue_leaves_no_wake_up_behind(registry: Registry) -> None:
    runner = registry.runner([Recorder().kind()], job_poll_interval=60)
    await runner.start()
    async with registry.sessionmaker() as session:
        await enqueue(session, "test", max_attempts=1)
        assert session.info.get(ENQUEUED) is True
        await session.rollback()
        assert ENQUEUED not in session.info  # a later commit of this session wakes nobody
