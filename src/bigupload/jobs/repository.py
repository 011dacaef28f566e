"""The jobs table as workers use it: claim due jobs, then write about one attempt conditionally.

Every write after the claim names the attempt (job id, worker, attempt number) and changes
nothing unless the job is still running as that attempt: a worker that lost the job to another
never overwrites the new owner's state. Each answers whether it wrote. The caller commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, exists, func, null, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bigupload import clock
from bigupload.jobs.models import Job, JobStatus

QUEUED = JobStatus.QUEUED.value
RUNNING = JobStatus.RUNNING.value
DONE = JobStatus.DONE.value
DEAD = JobStatus.DEAD.value


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job this worker now holds, and the attempt it is."""

    id: int
    kind: str
    payload: dict[str, Any]
    file_id: uuid.UUID | None
    owner: str | None
    attempt: int
    max_attempts: int
    #: Set when the job had no attempts left: it is held only to be given up.
    give_up_reason: str | None = None


async def claim_due(
    session: AsyncSession,
    *,
    kinds: Iterable[str],
    worker_id: str,
    limit: int,
    lease_seconds: float,
) -> list[Claimed]:
    """Lease up to ``limit`` due jobs of ``kinds`` to ``worker_id``, counting an attempt each.

    Due: queued with ``run_at`` come, or running with its lease passed (its worker died or
    stalled); and no earlier job with its ``ordering_key`` queued or running. On PostgreSQL the
    rows are locked ``FOR UPDATE SKIP LOCKED``: concurrent claimers take different jobs and
    never wait for each other. On SQLite the transaction (``BEGIN IMMEDIATE``) already excludes
    every other writer, in any process.
    """
    now = clock.now()
    earlier = aliased(Job)
    blocked = exists().where(
        earlier.ordering_key == Job.ordering_key,
        earlier.id < Job.id,
        earlier.status.in_([QUEUED, RUNNING]),
    )
    columns = (
        Job.id,
        Job.kind,
        Job.payload,
        Job.file_id,
        Job.owner,
        Job.status,
        Job.attempts,
        Job.max_attempts,
        Job.run_at,
    )
    postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
    rows: list[Row[Any]] = []
    # Two queries, each a range of ix_jobs_due in the order wanted (one with an OR between
    # them scans the whole table, finished jobs included); the first ``limit`` of both.
    for due in (
        and_(Job.status == QUEUED, Job.run_at <= now),
        and_(Job.status == RUNNING, Job.locked_until < now),
    ):
        query = (
            select(*columns)
            .where(due, Job.kind.in_(sorted(kinds)), ~blocked)
            .order_by(Job.run_at, Job.id)
            .limit(limit)
        )
        if postgres:
            query = query.with_for_update(skip_locked=True, of=Job)
        rows += (await session.execute(query)).all()
    rows = sorted(rows, key=lambda row: (row.run_at, row.id))[:limit]
    lease = {
        "status": RUNNING,
        "locked_by": worker_id,
        "locked_until": now + timedelta(seconds=lease_seconds),
        "updated_at": now,
    }
    fresh = [row.id for row in rows if row.attempts < row.max_attempts]
    spent = [row.id for row in rows if row.attempts >= row.max_attempts]
    if fresh:
        await session.execute(
            update(Job).where(Job.id.in_(fresh)).values(attempts=Job.attempts + 1, **lease)
        )
    if spent:  # held, but not an attempt: only the kind's give_up hook will run
        await session.execute(update(Job).where(Job.id.in_(spent)).values(**lease))

    claimed = []
    for row in rows:
        reason = None
        if row.attempts >= row.max_attempts:
            reason = (
                f"the worker running it stopped ({row.attempts} attempts)"
                if row.status == RUNNING
                else f"no attempts left ({row.attempts} of {row.max_attempts})"
            )
        claimed.append(
            Claimed(
                id=row.id,
                kind=row.kind,
                payload=dict(row.payload or {}),
                file_id=row.file_id,
                owner=row.owner,
                attempt=row.attempts if reason else row.attempts + 1,
                max_attempts=row.max_attempts,
                give_up_reason=reason,
            )
        )
    return claimed


async def mark_done(
    session: AsyncSession, job_id: int, worker_id: str, attempt: int, result: dict[str, Any] | None
) -> bool:
    now = clock.now()
    return await _write(
        session,
        job_id,
        worker_id,
        attempt,
        status=DONE,
        result=_json(result),
        finished_at=now,
        updated_at=now,
        locked_by=None,
        locked_until=None,
    )


async def requeue(
    session: AsyncSession,
    job_id: int,
    worker_id: str,
    attempt: int,
    *,
    run_at: datetime,
    last_error: str,
    result: dict[str, Any] | None,
) -> bool:
    return await _write(
        session,
        job_id,
        worker_id,
        attempt,
        status=QUEUED,
        run_at=run_at,
        last_error=last_error,
        result=_json(result),
        updated_at=clock.now(),
        locked_by=None,
        locked_until=None,
    )


async def mark_dead(
    session: AsyncSession,
    job_id: int,
    worker_id: str,
    attempt: int,
    *,
    last_error: str,
    result: dict[str, Any] | None,
) -> bool:
    now = clock.now()
    return await _write(
        session,
        job_id,
        worker_id,
        attempt,
        status=DEAD,
        last_error=last_error,
        result=_json(result),
        finished_at=now,
        updated_at=now,
        locked_by=None,
        locked_until=None,
    )


async def extend(
    session: AsyncSession, job_id: int, worker_id: str, attempt: int, lease_seconds: float
) -> bool:
    until = clock.now() + timedelta(seconds=lease_seconds)
    return await _write(session, job_id, worker_id, attempt, locked_until=until)


async def _write(
    session: AsyncSession, job_id: int, worker_id: str, attempt: int, **values: Any
) -> bool:
    written = await session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == RUNNING,
            Job.locked_by == worker_id,
            Job.attempts == attempt,
        )
        .values(**values)
    )
    return bool(getattr(written, "rowcount", 0))


def _json(value: dict[str, Any] | None) -> Any:
    return value if value is not None else null()  # SQL NULL, not JSON null


async def next_due(session: AsyncSession, kinds: Iterable[str]) -> datetime | None:
    """When the next job of ``kinds`` not due now becomes due: a queued job's ``run_at``, or a
    running job's lease end (its worker may die). ``None`` if no such job is known."""
    now = clock.now()
    names = sorted(kinds)
    queued = select(func.min(Job.run_at)).where(
        Job.kind.in_(names), Job.status == QUEUED, Job.run_at > now
    )
    leased = select(func.min(Job.locked_until)).where(
        Job.kind.in_(names), Job.status == RUNNING, Job.locked_until > now
    )
    query = select(queued.scalar_subquery(), leased.scalar_subquery())
    found = (await session.execute(query)).one()
    times = [t for t in found if t is not None]
    return min(times) if times else None
