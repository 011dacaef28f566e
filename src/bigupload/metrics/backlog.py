"""The job backlog, read from the registry when a scrape asks.

Computed at scrape time rather than kept by the runners: the registry is the one place that
knows every process's jobs (``serve`` workers, ``bigupload worker`` processes, replicas), so
any process answers the same figure and no per-process gauge has to be summed or left behind
by a process that died. Two grouped queries, each a range of the ``ix_jobs_due`` index
(``status, run_at``): their cost grows with the jobs due or running, not with the table.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bigupload import clock
from bigupload.jobs.models import Job, JobStatus


@dataclass(eq=False)  # a collector is registered by identity
class Backlog:
    """Jobs due and running by kind, and the age of the oldest due job, at one moment."""

    kinds: Collection[str]
    due: dict[str, int] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)
    oldest_due: dict[str, float] = field(default_factory=dict)

    def collect(self) -> Iterable[Metric]:
        kinds = sorted(set(self.kinds) | set(self.due) | set(self.running))
        due = GaugeMetricFamily(
            "bigupload_jobs_due", "Jobs queued whose time to run has come.", labels=["kind"]
        )
        running = GaugeMetricFamily(
            "bigupload_jobs_running", "Jobs claimed by a runner now.", labels=["kind"]
        )
        oldest = GaugeMetricFamily(
            "bigupload_jobs_oldest_due_age_seconds",
            "How long the oldest due job has waited past its time (0: none waits).",
            labels=["kind"],
        )
        for kind in kinds:
            due.add_metric([kind], self.due.get(kind, 0))
            running.add_metric([kind], self.running.get(kind, 0))
            oldest.add_metric([kind], self.oldest_due.get(kind, 0.0))
        yield from (due, running, oldest)


async def read_backlog(
    sessionmaker: async_sessionmaker[AsyncSession], kinds: Collection[str]
) -> Backlog:
    now = clock.now()
    backlog = Backlog(kinds)
    async with sessionmaker() as session:
        queued = await session.execute(
            select(Job.kind, func.count(), func.min(Job.run_at))
            .where(Job.status == JobStatus.QUEUED.value, Job.run_at <= now)
            .group_by(Job.kind)
        )
        for kind, count, earliest in queued.all():
            backlog.due[kind] = count
            backlog.oldest_due[kind] = _age(now, earliest)
        running = await session.execute(
            select(Job.kind, func.count())
            .where(Job.status == JobStatus.RUNNING.value)
            .group_by(Job.kind)
        )
        backlog.running = {kind: count for kind, count in running.all()}
    return backlog


def _age(now: datetime, earliest: datetime | None) -> float:
    return max(0.0, (now - earliest).total_seconds()) if earliest is not None else 0.0
