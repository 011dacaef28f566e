"""Named leases, and periodic work: exclusive work is done by one runner per interval.

Two runners with their own worker ids on one registry stand for two processes.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from bigupload.jobs import leases
from bigupload.jobs.kinds import JobContext, JobKind, Periodic, PeriodicContext
from bigupload.jobs.models import JobStatus, Lease
from tests.jobs.conftest import LogRecords, Registry, eventually
from tests.support.clock import Clock

INTERVAL = 60.0


async def lease_row(registry: Registry, name: str) -> Lease | None:
    async with registry.sessionmaker() as session, session.begin():
        found: Lease | None = await session.scalar(select(Lease).where(Lease.name == name))
    return found


async def test_a_lease_has_one_holder_until_it_ends(registry: Registry, test_clock: Clock) -> None:
    async def acquire(holder: str, seconds: float = 10) -> bool:
        async with registry.sessionmaker() as session, session.begin():
            return await leases.acquire(session, "job", holder, seconds)

    async def release(holder: str) -> bool:
        async with registry.sessionmaker() as session, session.begin():
            return await leases.release(session, "job", holder)

    assert await acquire("a")
    assert not await acquire("b")
    assert await acquire("a", 20)  # the holder extends it
    row = await lease_row(registry, "job")
    assert row is not None and row.holder == "a"
    assert (row.until - test_clock.current).total_seconds() == 20
    test_clock.advance(19)
    assert not await acquire("b")
    test_clock.advance(2)
    assert await acquire("b")  # expired: anyone may take it
    assert not await release("a")  # not a's any more
    assert await release("b")
    assert await lease_row(registry, "job") is None
    assert await acquire("a")


class Work:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail

    async def run(self, ctx: PeriodicContext) -> object:
        self.calls.append(ctx.worker_id)
        if self.fail:
            raise RuntimeError("sweep broke")
        return {"by": ctx.worker_id}


async def test_exclusive_work_is_done_by_one_runner_per_interval(
    registry: Registry, test_clock: Clock
) -> None:
    work = Work()
    periodic = Periodic("sweep", lambda settings: INTERVAL, work.run, exclusive=True)
    a = registry.runner(periodics=[periodic], worker_id="a")
    b = registry.runner(periodics=[periodic], worker_id="b")

    assert await a.run_periodic("sweep") == {"by": "a"}
    assert await b.run_periodic("sweep") is None
    test_clock.advance(INTERVAL - 1)
    assert await b.run_periodic("sweep") is None
    test_clock.advance(2)
    assert await b.run_periodic("sweep") == {"by": "b"}
    assert await a.run_periodic("sweep") is None
    assert work.calls == ["a", "b"]
    row = await lease_row(registry, "periodic:sweep")
    assert row is not None and row.holder == "b"


async def test_shared_work_is_done_by_every_runner(registry: Registry) -> None:
    work = Work()
    periodic = Periodic("dispatch", lambda settings: INTERVAL, work.run)
    a = registry.runner(periodics=[periodic], worker_id="a")
    b = registry.runner(periodics=[periodic], worker_id="b")
    assert await a.run_periodic("dispatch") == {"by": "a"}
    assert await b.run_periodic("dispatch") == {"by": "b"}
    assert await a.run_periodic("dispatch") == {"by": "a"}
    assert work.calls == ["a", "b", "a"]
    assert await lease_row(registry, "periodic:dispatch") is None


async def test_the_loop_does_periodic_work_each_interval_and_survives_its_failures(
    registry: Registry, test_clock: Clock, job_logs: LogRecords
) -> None:
    work, broken = Work(), Work(fail=True)
    ran: list[int] = []

    async def job(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    runner = registry.runner(
        [JobKind("test", job)],
        periodics=[
            Periodic("sweep", lambda settings: INTERVAL, work.run, exclusive=True),
            Periodic("broken", lambda settings: INTERVAL, broken.run),
        ],
        job_poll_interval=0.01,
    )
    await runner.start()
    await eventually(lambda: len(work.calls) == 1 and len(broken.calls) == 1, "the first runs")
    test_clock.advance(INTERVAL + 1)
    # The loop sleeps until the periodics are due in real seconds (up to INTERVAL); a clock
    # moved by hand does not shorten a sleep already begun (once the runner listens on
    # PostgreSQL, nothing else ends it within the test).
    runner.wake()
    await eventually(lambda: len(work.calls) == 2 and len(broken.calls) == 2, "the second runs")

    job_id = await registry.enqueue("test")  # the loop still claims jobs
    await eventually(lambda: ran == [job_id], "the job")
    failures = [r for r in job_logs.at(logging.ERROR) if "periodic broken failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info is not None for r in failures)
    await runner.stop()
    assert (await registry.job(job_id)).status == JobStatus.DONE


async def test_exclusive_work_keeps_its_lease_while_it_runs(
    registry: Registry, test_clock: Clock
) -> None:
    inside, release = asyncio.Event(), asyncio.Event()

    async def slow(ctx: PeriodicContext) -> object:
        inside.set()
        await release.wait()
        return ctx.worker_id

    periodic = Periodic("slow", lambda settings: 1.5, slow, exclusive=True)  # renewed every 0.5 s
    a = registry.runner(periodics=[periodic], worker_id="a")
    b = registry.runner(periodics=[periodic], worker_id="b")
    running = asyncio.create_task(a.run_periodic("slow"))
    await asyncio.wait_for(inside.wait(), 30)
    taken = await lease_row(registry, "periodic:slow")
    assert taken is not None
    test_clock.advance(1.0)  # close to the end of the lease

    async def renewed() -> bool:
        row = await lease_row(registry, "periodic:slow")
        return row is not None and row.until > taken.until

    await eventually(renewed, "the lease renewed")
    test_clock.advance(1.0)  # past the first lease's end, not past the renewed one
    assert await b.run_periodic("slow") is None
    release.set()
    assert await asyncio.wait_for(running, 30) == "a"
