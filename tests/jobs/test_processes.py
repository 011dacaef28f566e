"""Job runners as real processes (tests/jobs/job_worker.py) sharing one registry.

- Two workers on one PostgreSQL share 200 jobs: each job's effect is committed exactly once
  and each job is attempted once (row locks: no two workers ever claim the same job).
- A worker killed with SIGKILL in the middle of a job: once its lease (1 s) has passed, a second
  worker takes the job over and does it, once. On PostgreSQL and on a SQLite file.

The effect table has no unique constraint, so a job done twice would show as two rows. Only the
processes a test started are stopped, by their PIDs; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bigupload.jobs.models import JobStatus
from bigupload.jobs.queue import enqueue
from tests.jobs.conftest import Registry

WORKER = Path(__file__).with_name("job_worker.py")
WAIT = 60.0  # an upper bound against hanging, never a measure of speed
JOBS = 200

POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    output: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self) -> str:
        return self.output.read_text(errors="replace")[-3000:] if self.output.exists() else ""


@dataclass
class Workers:
    """Starts job_worker.py processes on one registry, and stops exactly those."""

    directory: Path
    database_url: str
    started: list[Worker] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.directory / "workers.log"

    def spawn(self, name: str, **env: str) -> Worker:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("BIGUPLOAD_")}
        environment.update(
            JOB_WORKER_DATABASE_URL=self.database_url,
            JOB_WORKER_LOG=str(self.log),
            BIGUPLOAD_JOB_POLL_INTERVAL="0.05",
            PYTHONUNBUFFERED="1",
        )
        environment.update(env)  # may override the poll interval
        output = self.directory / f"{name}.out"
        with output.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER)],
                env=environment,
                cwd=self.directory,  # no stray .env
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(proc, output)
        self.started.append(worker)
        return worker

    def lines(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split() for line in self.log.read_text().splitlines() if line]

    def starts(self) -> list[tuple[int, int]]:
        """``(job id, pid)`` of every job start, in order."""
        return [(int(p[1]), int(p[2])) for p in self.lines() if p[0] == "start"]

    def ready(self) -> set[int]:
        return {int(p[1]) for p in self.lines() if p[0] == "ready"}

    def check_alive(self, *workers: Worker) -> None:
        for worker in workers:
            if worker.proc.poll() is not None:
                raise AssertionError(
                    f"worker {worker.pid} exited ({worker.proc.returncode}):\n{worker.tail()}"
                )

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.proc.poll() is None:
                worker.proc.terminate()
        for worker in self.started:
            try:
                worker.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait(timeout=10)


@contextmanager
def workers_on(registry: Registry) -> Iterator[Workers]:
    workers = Workers(registry.tmp_path, registry.url)
    try:
        yield workers
    finally:
        workers.stop_all()


async def until(check: Any, what: str, workers: Workers, *alive: Worker) -> None:
    """Poll ``check()`` (sync or async) until true, failing fast if a worker died."""
    deadline = time.monotonic() + WAIT
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        workers.check_alive(*alive)
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {w.pid}:\n{w.tail()}" for w in workers.started)
            raise AssertionError(f"timed out waiting for {what}\n{tails}")
        await asyncio.sleep(0.05)


@POSTGRES_ONLY
async def test_two_workers_do_every_job_exactly_once(registry: Registry) -> None:
    with workers_on(registry) as workers:
        first, second = workers.spawn("first"), workers.spawn("second")
        # Both runners run before there is any work, so that both can take a share.
        await until(
            lambda: workers.ready() == {first.pid, second.pid}, "both ready", workers, first, second
        )
        async with registry.sessionmaker() as session, session.begin():
            for n in range(JOBS):
                await enqueue(session, "effect", {"n": n}, max_attempts=3)

        async def all_done() -> bool:
            return await registry.count(JobStatus.DONE) == JOBS

        await until(all_done, f"{JOBS} jobs done", workers, first, second)

    jobs = await registry.jobs()
    assert len(jobs) == JOBS
    assert {(job.status, job.attempts) for job in jobs} == {(JobStatus.DONE, 1)}
    effects = await registry.effects()
    assert sorted(job_id for job_id, _ in effects) == sorted(job.id for job in jobs)  # once each
    by_pid = {job.id: job.result["pid"] for job in jobs if job.result is not None}
    assert set(by_pid.values()) == {first.pid, second.pid}  # both did some
    starts = workers.starts()
    assert sorted(starts) == sorted(by_pid.items())  # each job started once, by its finisher


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_killed_workers_job_is_taken_over_and_done_once(registry: Registry) -> None:
    job_id = await registry.enqueue("effect", max_attempts=3)
    with workers_on(registry) as workers:
        doomed = workers.spawn(
            "doomed", JOB_WORKER_BLOCK_ON=str(job_id), BIGUPLOAD_JOB_LEASE_SECONDS="1"
        )
        await until(lambda: (job_id, doomed.pid) in workers.starts(), "the start", workers, doomed)
        os.kill(doomed.pid, signal.SIGKILL)
        assert doomed.proc.wait(timeout=10) == -signal.SIGKILL
        job = await registry.job(job_id)
        assert (job.status, job.attempts) == (JobStatus.RUNNING, 1)
        assert await registry.effects() == []

        heir = workers.spawn("heir", BIGUPLOAD_JOB_LEASE_SECONDS="1")

        async def done() -> bool:
            return (await registry.job(job_id)).status == JobStatus.DONE

        await until(done, "the job done by the second worker", workers, heir)

    job = await registry.job(job_id)
    assert job.attempts == 2
    assert job.result == {"pid": heir.pid}
    effects = await registry.effects()
    assert len(effects) == 1 and effects[0][0] == job_id
    assert workers.starts() == [(job_id, doomed.pid), (job_id, heir.pid)]
