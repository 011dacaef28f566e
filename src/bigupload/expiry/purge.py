"""The ``purge`` job: free what the store holds for a file that expired.

The sweeper marks the file ``expired`` and queues this job in the same transaction, so the bytes
of a file are removed only once the registry no longer offers them, and are removed even if the
sweeper's process dies right after its commit. The job aborts the file's multipart upload, if it
had one, and deletes its object; both are idempotent (an upload that is gone, an object that is
missing: nothing to do), so running the job again after a crash is harmless. A store that cannot
be reached makes the job try again later, with backoff, for about a day.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.config import Settings
from bigupload.files.models import FileRecord
from bigupload.files.status import FileStatus
from bigupload.jobs.kinds import GiveUp, JobContext, JobKind, Retry, exponential_backoff
from bigupload.jobs.models import Job, JobStatus
from bigupload.jobs.queue import ENQUEUED, enqueue, enqueue_many
from bigupload.storage.base import StorageError, StorageUnreachable, UploadNotFound

log = logging.getLogger("bigupload.expiry")

#: Statuses whose stored bytes nobody may read any more: the only ones a purge touches.
PURGEABLE = frozenset({FileStatus.EXPIRED, FileStatus.ABORTED})


def dedupe_key(file_id: uuid.UUID) -> str:
    return f"purge:{file_id}"


async def _file_status(ctx: JobContext, file_id: uuid.UUID) -> str | None:
    """The file's status, or ``None`` once its record is deleted (session closed on return)."""
    async with ctx.sessionmaker() as session:
        record = await session.get(FileRecord, file_id)
        status = record.status if record is not None else None
        await session.rollback()
    return status


async def run_purge(ctx: JobContext) -> None:
    key = str(ctx.payload["key"])
    upload_id = ctx.payload.get("upload_id")
    if ctx.file_id is not None:
        # A safety net: a file whose bytes are offered to anyone is never purged.
        status = await _file_status(ctx, ctx.file_id)
        if status is not None and FileStatus(status) not in PURGEABLE:
            raise GiveUp(f"the file is {status}: its bytes are not purged")
    aborted = False
    try:
        if upload_id:
            with contextlib.suppress(UploadNotFound):  # completed, aborted or never begun
                await ctx.storage.abort_multipart(key, str(upload_id))
                aborted = True
        await ctx.storage.delete(key)
    except StorageUnreachable as exc:
        raise Retry(f"the store is unreachable: {exc}") from exc
    except StorageError as exc:
        raise Retry(f"the store failed: {exc}") from exc
    result: dict[str, Any] = {"key": key, "upload_aborted": aborted, "object_deleted": True}
    async with ctx.sessionmaker() as session, session.begin():
        await ctx.finish(session, result)
    log.info("purged file %s key=%s upload_aborted=%s", ctx.file_id, key, aborted)


async def _gave_up(ctx: JobContext, reason: str) -> None:
    log.warning(
        "gave up purging file %s after %d attempts (%s): key=%s may still hold bytes",
        ctx.file_id,
        ctx.attempt,
        reason,
        ctx.payload.get("key"),
    )


def _backoff(attempt: int) -> float:
    return exponential_backoff(attempt, base=5.0, cap=3600.0)


PURGE = JobKind(
    name="purge",
    run=run_purge,
    give_up=_gave_up,
    backoff=_backoff,
    # 5 s doubling to an hour, then hourly: a store that is down for most of a day is waited for.
    max_attempts=30,
)


async def enqueue_purge(
    session: AsyncSession, record: FileRecord, settings: Settings, *, run_at: datetime | None = None
) -> bool:
    """Queue the purge of ``record``'s bytes in ``session``'s transaction (once per file)."""
    return await enqueue(
        session,
        PURGE.name,
        {"key": record.key, "upload_id": record.multipart_upload_id},
        max_attempts=max(PURGE.max_attempts or 0, settings.job_max_attempts),
        file_id=record.id,
        owner=record.owner,
        dedupe_key=dedupe_key(record.id),
        run_at=run_at,
    )


async def enqueue_purges(
    session: AsyncSession, records: Sequence[FileRecord], settings: Settings
) -> None:
    """:func:`enqueue_purge` for each of ``records``, due now, in one statement."""
    await enqueue_many(
        session,
        [
            {
                "kind": PURGE.name,
                "payload": {"key": record.key, "upload_id": record.multipart_upload_id},
                "max_attempts": max(PURGE.max_attempts or 0, settings.job_max_attempts),
                "file_id": record.id,
                "owner": record.owner,
                "dedupe_key": dedupe_key(record.id),
            }
            for record in records
        ],
    )


async def rerun_purge(session: AsyncSession, file_id: uuid.UUID) -> None:
    """Make the file's purge job, if it finished (done, or gave up), run again now, with all
    its attempts: its bytes turned out to be still in the store (in ``session``'s
    transaction)."""
    now = clock.now()
    result = await session.execute(
        update(Job)
        .where(
            Job.dedupe_key == dedupe_key(file_id),
            Job.status.in_([JobStatus.DONE.value, JobStatus.DEAD.value]),
        )
        .values(
            status=JobStatus.QUEUED.value,
            attempts=0,
            run_at=now,
            updated_at=now,
            finished_at=None,
        )
    )
    if getattr(result, "rowcount", 0):
        session.info[ENQUEUED] = True
