"""What ``bigupload sweep`` does once: sweep, run the purges it queued, and count the outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bigupload import clock
from bigupload.cli.registry import prepared_engine
from bigupload.config import Settings
from bigupload.db import create_sessionmaker
from bigupload.expiry.purge import PURGE
from bigupload.expiry.sweeper import SweepReport
from bigupload.expiry.sweeper import sweep as sweep_once
from bigupload.jobs.models import Job, JobStatus
from bigupload.storage.factory import build_storage


@dataclass
class Outcome:
    report: SweepReport
    #: Purge jobs run (by this command: the ones this sweep queued, and any others due).
    purges_run: int = 0
    #: Purge jobs that failed in this run and wait for a later attempt (the store failed).
    purges_waiting: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.report.as_dict(),
            "purges_run": self.purges_run,
            "purges_waiting": self.purges_waiting,
        }

    def summary(self) -> str:
        text = self.report.summary() + f"; ran {self.purges_run} purge job(s)"
        if self.purges_waiting:
            text += f", {self.purges_waiting} waiting to be retried"
        return text

    @property
    def ok(self) -> bool:
        return not self.report.store_unreachable and not self.purges_waiting


async def _purges_waiting(sessionmaker: async_sessionmaker[AsyncSession], since: datetime) -> int:
    """Purge jobs that failed since ``since`` and wait for another attempt."""
    async with sessionmaker() as session, session.begin():
        count = await session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.kind == PURGE.name,
                Job.status == JobStatus.QUEUED.value,
                Job.attempts > 0,
                Job.updated_at >= since,
            )
        )
    return int(count or 0)


async def run(settings: Settings) -> Outcome:
    from bigupload.jobs.runner import JobRunner

    started = clock.now()
    engine = await prepared_engine(settings)
    storage = build_storage(settings)
    try:
        sessionmaker = create_sessionmaker(engine)
        outcome = Outcome(await sweep_once(sessionmaker, storage, settings))
        if not outcome.report.store_unreachable:
            runner = JobRunner(
                sessionmaker=sessionmaker,
                storage=storage,
                settings=settings,
                kinds={PURGE.name: PURGE},
            )
            outcome.purges_run = await runner.run_until_idle()
        outcome.purges_waiting = await _purges_waiting(sessionmaker, started)
        return outcome
    finally:
        await storage.close()
        await engine.dispose()
