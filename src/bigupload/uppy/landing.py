"""The ``landing`` job: confirm a file Uppy sent with a form POST once it is in the store.

Nobody calls ``complete`` after a form POST, and not every store reports what it stored. So
``GET /s3/params`` queues one job per file (``dedupe_key`` ``landing:<file id>``), first run a
couple of seconds later. Each run:

- ends at once when the file is no longer ``pending`` (a storage event, or anyone else,
  confirmed it first; or it was aborted, expired or deleted);
- asks the store for the object; when it is there, confirms the file exactly as
  ``POST /api/v1/uploads/{id}/complete`` does (:func:`bigupload.uploads.service.complete_upload`:
  ``uploaded`` with the stored size, processing queued, all in the transaction that ends the job);
- when it is not there yet, tries again later: after 2 s, doubling up to every 60 s, until the
  form's expiry plus a minute (:data:`GRACE_SECONDS`), after which nothing can land any more and
  the job ends; the file stays ``pending`` and the expiry sweeper ends it like any other upload
  that was never finished.
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.config import Settings
from bigupload.errors import AppError, StorageFailure, StorageUnavailable
from bigupload.files import repository
from bigupload.files.models import FileRecord
from bigupload.files.status import FileStatus
from bigupload.jobs import queue
from bigupload.jobs.kinds import JobContext, JobKind, Retry, exponential_backoff
from bigupload.jobs.runner import JITTER, describe
from bigupload.storage.base import StorageError
from bigupload.uploads.service import complete_upload

log = logging.getLogger("bigupload.uppy")

LANDING = "landing"
#: Seconds after the form's expiry that the object is still looked for (a POST begun just
#: before the expiry may take a while to finish).
GRACE_SECONDS = 60
#: Seconds before the first look: the browser has only just been given the form.
FIRST_LOOK_SECONDS = 2.0
#: Backoff between looks: 2 s, doubling, at most 60 s.
BACKOFF_BASE = 2.0
BACKOFF_CAP = 60.0
#: Attempts beyond those the looks need, for a store that fails now and then.
SPARE_ATTEMPTS = 10

backoff = functools.partial(exponential_backoff, base=BACKOFF_BASE, cap=BACKOFF_CAP)


def attempts_for(seconds: float) -> int:
    """Attempts enough to keep looking for ``seconds`` (jitter may shorten each wait), plus
    :data:`SPARE_ATTEMPTS`."""
    attempts, waited = 1, FIRST_LOOK_SECONDS
    while waited < seconds:
        waited += backoff(attempts) * (1 - JITTER)
        attempts += 1
    return attempts + SPARE_ATTEMPTS


async def enqueue_landing(
    session: AsyncSession, record: FileRecord, expires_at: datetime, settings: Settings
) -> None:
    """Queue the landing job of ``record``, whose form POST expires at ``expires_at``, in
    ``session``'s transaction."""
    now = clock.now()
    until = expires_at + timedelta(seconds=GRACE_SECONDS)
    await queue.enqueue(
        session,
        LANDING,
        {"file_id": str(record.id), "until": until.isoformat()},
        max_attempts=attempts_for((until - now).total_seconds()),
        file_id=record.id,
        owner=record.owner,
        dedupe_key=f"landing:{record.id}",
        run_at=now + timedelta(seconds=FIRST_LOOK_SECONDS),
    )


async def _finish(ctx: JobContext, session: AsyncSession, result: dict[str, Any]) -> None:
    await ctx.finish(session, result)
    await session.commit()


async def run(ctx: JobContext) -> None:
    file_id = ctx.file_id or uuid.UUID(str(ctx.payload["file_id"]))
    until = datetime.fromisoformat(str(ctx.payload["until"]))
    async with ctx.sessionmaker() as session:
        record = await session.get(FileRecord, file_id)
        if record is None or record.status != FileStatus.PENDING.value:
            status = record.status if record is not None else "deleted"
            await _finish(ctx, session, {"outcome": "settled", "status": status})
            return
        await session.commit()  # hold no registry connection while the store is asked
        try:
            stored = await ctx.storage.stat(record.key)
        except StorageError as exc:
            raise Retry(f"the store failed: {describe(exc)}") from exc
        if stored is None:
            if clock.now() >= until:
                await _finish(ctx, session, {"outcome": "not_landed"})
                log.info("file %s: nothing landed before its form expired", file_id)
                return
            raise Retry("nothing has landed yet", waiting=True)
        await _confirm(ctx, session, record)


async def _confirm(ctx: JobContext, session: AsyncSession, record: FileRecord) -> None:
    try:
        record = await complete_upload(session, record, ctx.storage, settings=ctx.settings)
    except (StorageUnavailable, StorageFailure) as exc:
        raise Retry(f"the store failed: {exc.message}") from exc
    except AppError as exc:
        await session.rollback()
        await repository.refresh(session, record)
        if record.status == FileStatus.PENDING.value:
            raise Retry(f"{exc.code}: {exc.message}") from exc
        result = {"outcome": "refused", "code": exc.code, "status": record.status}
        await _finish(ctx, session, result)
        return
    await _finish(
        ctx, session, {"outcome": "confirmed", "status": record.status, "size": record.stored_size}
    )
    log.info("file %s landed: %s bytes", record.id, record.stored_size)


LANDING_KIND = JobKind(name=LANDING, run=run, backoff=backoff)
