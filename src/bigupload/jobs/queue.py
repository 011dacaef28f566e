"""Putting jobs in the queue. Claiming and running them is :mod:`bigupload.jobs.runner`'s."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.jobs.models import Job, JobStatus
from bigupload.jobs.wakeups import ENQUEUED

__all__ = ["ENQUEUED", "enqueue"]


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    max_attempts: int,
    file_id: uuid.UUID | None = None,
    owner: str | None = None,
    dedupe_key: str | None = None,
    ordering_key: str | None = None,
    run_at: datetime | None = None,
) -> bool:
    """Add a job to ``session``'s transaction; ``False`` if one with ``dedupe_key`` exists.

    The job becomes visible to workers when the caller commits, together with whatever change
    made it necessary; the commit wakes the runners (:mod:`bigupload.jobs.wakeups`).
    """
    now = clock.now()
    values = {
        "kind": kind,
        "payload": payload or {},
        "file_id": file_id,
        "owner": owner,
        "dedupe_key": dedupe_key,
        "ordering_key": ordering_key,
        "status": JobStatus.QUEUED.value,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_at": run_at or now,
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.bind.dialect.name if session.bind is not None else ""
    if dedupe_key is None:
        statement: Any = insert(Job).values(**values)
    elif dialect == "postgresql":
        statement = pg_insert(Job).values(**values).on_conflict_do_nothing()
    else:
        statement = sqlite_insert(Job).values(**values).on_conflict_do_nothing()
    result = await session.execute(statement)
    added = bool(getattr(result, "rowcount", 1))
    if added:
        session.info[ENQUEUED] = True
    return added


async def enqueue_many(session: AsyncSession, jobs: list[dict[str, Any]]) -> None:
    """Add ``jobs`` (each the keyword arguments of :func:`enqueue` plus ``kind`` and
    ``payload``) to ``session``'s transaction in one statement, in order; those whose
    ``dedupe_key`` exists already are left out."""
    if not jobs:
        return
    now = clock.now()
    rows = [
        {
            "file_id": None,
            "owner": None,
            "dedupe_key": None,
            "ordering_key": None,
            "run_at": now,
            **job,
            "status": JobStatus.QUEUED.value,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for job in jobs
    ]
    dialect = session.bind.dialect.name if session.bind is not None else ""
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(insert_(Job).on_conflict_do_nothing(), rows)
    session.info[ENQUEUED] = True
