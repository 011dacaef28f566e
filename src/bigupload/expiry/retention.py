"""Retention: finished jobs and old file events are deleted once they are older than configured.

Run by every sweep (:func:`bigupload.expiry.sweeper.sweep`), :data:`BATCH` rows per statement,
each batch its own short transaction with the loop given back between them (SQLite has one
connection, and requests wait for it).

* A job is deleted once it finished (``done`` or ``dead``) more than ``job_retention``
  ago: its row, its delivery log entry (webhook jobs are the delivery log) and its dedupe key go.
  Queued and running jobs are never deleted, however old.
* A file event is deleted once it is older than ``event_retention``, its notification
  jobs were queued (``dispatched``), and its file has no job still queued or running. An SSE
  client resuming after a deleted event gets the events after it (what is left).

``0`` keeps them forever. The newest job and the newest event are always kept, whatever their
age: SQLite numbers a new row one past the largest id left, and an event id, once sent (SSE ids,
webhook ids ``evt_<id>``), must never name another event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bigupload.config import Settings
from bigupload.files.models import FileEvent
from bigupload.jobs.models import Job, JobStatus

log = logging.getLogger("bigupload.expiry")

#: Rows deleted per statement (and transaction).
BATCH = 100
FINISHED = (JobStatus.DONE.value, JobStatus.DEAD.value)
UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


async def prune_jobs(
    sessionmaker: async_sessionmaker[AsyncSession], cutoff: datetime, batch: int = BATCH
) -> int:
    """Delete the jobs that finished before ``cutoff``, ``batch`` per transaction; answer how
    many were."""
    newest = select(func.max(Job.id)).scalar_subquery()
    oldest = (
        select(Job.id)
        .where(Job.finished_at < cutoff, Job.status.in_(FINISHED), Job.id < newest)
        .order_by(Job.finished_at)
        .limit(batch)
    )
    statement = delete(Job).where(Job.id.in_(oldest.scalar_subquery()))
    return await _delete_in_batches(sessionmaker, statement, batch)


async def prune_events(
    sessionmaker: async_sessionmaker[AsyncSession], cutoff: datetime, batch: int = BATCH
) -> int:
    """Delete the dispatched events made before ``cutoff`` whose file has no unfinished job,
    ``batch`` per transaction; answer how many were.

    Events are read in id order, a window of ``batch`` ids at a time, and the walk ends at the
    first event made after ``cutoff``: ids follow creation, so no index on the time is needed
    (one would cost every status change a write).
    """
    pruned = 0
    after = 0
    while True:
        async with sessionmaker() as session, session.begin():
            rows = (
                await session.execute(
                    select(FileEvent.id, FileEvent.created_at)
                    .where(FileEvent.id > after)
                    .order_by(FileEvent.id)
                    .limit(batch)
                )
            ).all()
            window = [row.id for row in _until(rows, cutoff)]
            if window:
                busy = exists().where(Job.file_id == FileEvent.file_id, Job.status.in_(UNFINISHED))
                newest = select(func.max(FileEvent.id)).scalar_subquery()
                deleted = await session.execute(
                    delete(FileEvent)
                    .where(
                        FileEvent.id > after,
                        FileEvent.id <= window[-1],
                        FileEvent.id < newest,
                        FileEvent.created_at < cutoff,
                        FileEvent.dispatched.is_(True),
                        ~busy,
                    )
                    .execution_options(synchronize_session=False)
                )
                pruned += _rowcount(deleted)
        if len(window) < batch:  # reached events made after the cutoff, or the end
            return pruned
        after = window[-1]
        await asyncio.sleep(0)  # requests waiting for the registry go first


def _until(rows: Sequence[Any], cutoff: datetime) -> Sequence[Any]:
    """The rows before the first one made at or after ``cutoff``."""
    for index, row in enumerate(rows):
        if row.created_at >= cutoff:
            return rows[:index]
    return rows


async def _delete_in_batches(
    sessionmaker: async_sessionmaker[AsyncSession], statement: Any, batch: int
) -> int:
    pruned = 0
    while True:
        async with sessionmaker() as session, session.begin():
            deleted = _rowcount(
                await session.execute(statement.execution_options(synchronize_session=False))
            )
        pruned += deleted
        if deleted < batch:
            return pruned
        await asyncio.sleep(0)  # requests waiting for the registry go first


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def prune(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> tuple[int, int]:
    """Delete what is past its retention (see the module's doc); answer how many jobs and how
    many events were deleted."""
    jobs = events = 0
    if settings.job_retention:
        jobs = await prune_jobs(sessionmaker, now - timedelta(seconds=settings.job_retention))
    if settings.event_retention:
        events = await prune_events(sessionmaker, now - timedelta(seconds=settings.event_retention))
    if jobs or events:
        log.info("retention: pruned %d finished job(s) and %d file event(s)", jobs, events)
    return jobs, events
