"""What the job tests share: a clock the test moves, a migrated registry, runners made on demand.

Every test that uses ``registry`` runs on SQLite and on PostgreSQL (the ``database_url``
fixture). The ``job_effects`` table stands for a handler's effect: it has no unique constraint,
so a job whose effect was committed twice shows as two rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bigupload import migrate
from bigupload.db import create_engine, create_sessionmaker
from bigupload.jobs.kinds import JobContext, JobKind, Periodic
from bigupload.jobs.models import Job
from bigupload.jobs.queue import enqueue
from bigupload.jobs.runner import JobRunner
from bigupload.storage.local import LocalStorage
from tests.conftest import make_settings

WAIT = 30.0  # an upper bound against hanging, never a measure of speed

EFFECTS_DDL = "CREATE TABLE job_effects (job_id BIGINT NOT NULL, worker VARCHAR(64) NOT NULL)"


class LogRecords(logging.Handler):
    """The records of the ``bigupload.jobs`` logger (whether or not it propagates to the root)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def at(self, level: int) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno == level]


@pytest.fixture
def job_logs() -> Iterator[LogRecords]:
    logger = logging.getLogger("bigupload.jobs")
    handler = LogRecords()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` (sync or async) until it answers something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def add_effect(session: AsyncSession, ctx: JobContext) -> None:
    await session.execute(
        text("INSERT INTO job_effects (job_id, worker) VALUES (:job_id, :worker)"),
        {"job_id": ctx.job_id, "worker": ctx.worker_id},
    )


@dataclass
class Registry:
    """A migrated registry and the helpers the tests use to look at it."""

    url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tmp_path: Path
    runners: list[JobRunner] = field(default_factory=list)

    async def enqueue(self, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> int:
        """Enqueue and commit one job; answer its id."""
        kw.setdefault("max_attempts", 5)
        async with self.sessionmaker() as session, session.begin():
            assert await enqueue(session, kind, payload, **kw)
            new_id = (await session.execute(select(func.max(Job.id)))).scalar_one()
        assert isinstance(new_id, int)
        return new_id

    async def job(self, job_id: int) -> Job:
        async with self.sessionmaker() as session, session.begin():
            found = await session.get(Job, job_id)
        assert found is not None
        return found

    async def jobs(self) -> list[Job]:
        async with self.sessionmaker() as session, session.begin():
            found = list((await session.execute(select(Job).order_by(Job.id))).scalars())
        return found

    async def count(self, status: str) -> int:
        async with self.sessionmaker() as session, session.begin():
            found = await session.scalar(
                select(func.count()).select_from(Job).where(Job.status == status)
            )
        return int(found or 0)

    async def effects(self) -> list[tuple[int, str]]:
        async with self.sessionmaker() as session, session.begin():
            rows = await session.execute(
                text("SELECT job_id, worker FROM job_effects ORDER BY job_id, worker")
            )
            found = [(int(r[0]), str(r[1])) for r in rows]
        return found

    def runner(
        self,
        kinds: Sequence[JobKind] = (),
        *,
        periodics: Sequence[Periodic] = (),
        worker_id: str | None = None,
        **settings: Any,
    ) -> JobRunner:
        runner = JobRunner(
            sessionmaker=self.sessionmaker,
            storage=LocalStorage(
                self.tmp_path / "store", public_url="http://testserver", secret="s" * 40
            ),
            settings=make_settings(self.tmp_path, self.url, **settings),
            kinds={kind.name: kind for kind in kinds},
            periodics=periodics,
            worker_id=worker_id,
        )
        self.runners.append(runner)
        return runner


@pytest.fixture
async def registry(database_url: str, tmp_path: Path) -> AsyncIterator[Registry]:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    async with engine.begin() as connection:
        await connection.execute(text(EFFECTS_DDL))
    found = Registry(database_url, engine, create_sessionmaker(engine), tmp_path)
    try:
        yield found
    finally:
        for runner in found.runners:
            await runner.stop(timeout=1.0)
        await engine.dispose()
