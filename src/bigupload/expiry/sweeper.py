"""The sweeper: expire what was never finished or never confirmed, abort forgotten uploads.

One sweep does five things:

1. Files still ``pending`` ``pending_expiry_seconds`` after they were created become ``expired``,
   and a ``purge`` job is queued in the same transaction to free their bytes and parts.
2. With ``confirm_within_seconds`` set (the seed's *store on load* off), whole files the
   application did not confirm (``POST /files/{id}/confirm``) within that time of their upload
   become ``expired`` and are purged the same way.
3. Multipart uploads the store still holds under ``uploads/`` are aborted when no live file owns
   them: those of files already expired (unless their purge is still to run), aborted or failed
   at once, and those no record knows (a crash between beginning an upload and recording it,
   or a key bigupload never made) once they are older than ``pending_expiry_seconds``. A
   ``pending`` file's own upload is never touched, whatever date the store reports: its file
   expires first (step 1), and its purge frees the parts.
4. Files that writes cut off by a crash left in the store (the local store's ``tmp/``: an upload
   or a join killed half-way) are removed, never one a live request of any process writes; the
   report counts the files and bytes freed.
5. Finished jobs and old file events past their retention are deleted
   (:mod:`bigupload.expiry.retention`).

Every change is a conditional transition, so sweeps in several processes at once change each
file once; the :data:`SWEEP` periodic is also exclusive (one process at a time holds its lease).
The registry is used in short transactions of at most :data:`BATCH` files, and never while the
store is being asked (SQLite has a single connection).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, exists, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from bigupload import clock
from bigupload.config import Settings
from bigupload.expiry import retention
from bigupload.expiry.purge import PURGE, enqueue_purges
from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.status import READABLE, FileStatus
from bigupload.jobs.kinds import Periodic, PeriodicContext
from bigupload.jobs.models import Job, JobStatus
from bigupload.metrics import files as metered
from bigupload.storage.base import (
    HasLeftovers,
    MultipartUpload,
    Storage,
    StorageError,
    StorageUnreachable,
    UploadNotFound,
)

log = logging.getLogger("bigupload.expiry")

#: Files changed per transaction, and keys looked up per query.
BATCH = 100
#: Where bigupload makes every key (``uploads/<owner>/<yyyy>/<mm>/<uuid>``).
UPLOAD_PREFIX = "uploads/"
_OUR_KEY = re.compile(r"uploads/[^/]+/(?P<year>\d{4})/(?P<month>\d{2})/[^/]+")
#: Files whose own multipart upload is no longer wanted by anyone.
_FINISHED = frozenset({FileStatus.EXPIRED, FileStatus.ABORTED, FileStatus.FAILED})


@dataclass
class SweepReport:
    """What one sweep did."""

    expired_pending: int = 0
    expired_unconfirmed: int = 0
    orphan_uploads_aborted: int = 0
    #: Files an upload cut off by a crash left in the store (the local store's ``tmp/``).
    leftover_files_removed: int = 0
    leftover_bytes_freed: int = 0
    #: Deleted past their retention: finished jobs, and file events.
    jobs_pruned: int = 0
    events_pruned: int = 0
    errors: list[str] = field(default_factory=list)
    #: The store could not be reached: the uploads it holds were not looked at.
    store_unreachable: bool = False

    def summary(self) -> str:
        text = (
            f"expired {self.expired_pending} pending and {self.expired_unconfirmed} unconfirmed "
            f"file(s), aborted {self.orphan_uploads_aborted} orphan multipart upload(s)"
        )
        if self.leftover_files_removed:
            text += (
                f", removed {self.leftover_files_removed} leftover file(s) "
                f"({self.leftover_bytes_freed} bytes)"
            )
        if self.jobs_pruned or self.events_pruned:
            text += (
                f", pruned {self.jobs_pruned} finished job(s) and {self.events_pruned} "
                "file event(s)"
            )
        if self.errors:
            text += f", {len(self.errors)} error(s): {self.errors[0]}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def duration(seconds: int) -> str:
    """``604800`` -> ``"7 days"``: the largest whole unit."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession], storage: Storage, settings: Settings
) -> SweepReport:
    """Sweep once (see the module's doc); store failures are reported, not raised."""
    report = SweepReport()
    now = clock.now()
    pending_limit = timedelta(seconds=settings.pending_expiry_seconds)
    report.expired_pending = await _expire_all(
        sessionmaker,
        settings,
        now,
        criteria=[
            FileRecord.status == FileStatus.PENDING.value,
            FileRecord.created_at < now - pending_limit,
        ],
        guard=[],
        reason=f"not uploaded within {duration(settings.pending_expiry_seconds)}",
    )
    if settings.confirm_within_seconds is not None:
        uploaded_before = now - timedelta(seconds=settings.confirm_within_seconds)
        # A status at a time: each is one range of ix_files_unconfirmed, read in order.
        for status in sorted(s.value for s in READABLE):
            report.expired_unconfirmed += await _expire_all(
                sessionmaker,
                settings,
                now,
                criteria=[
                    FileRecord.status == status,
                    FileRecord.confirmed_at.is_(None),
                    FileRecord.uploaded_at < uploaded_before,
                ],
                # A confirmation that commits first wins: the file is then kept.
                guard=[FileRecord.confirmed_at.is_(None)],
                reason=(
                    f"not confirmed within {duration(settings.confirm_within_seconds)} "
                    "of its upload"
                ),
            )
    await _abort_orphans(sessionmaker, storage, now - pending_limit, report)
    if not report.store_unreachable:
        await _remove_leftovers(storage, report)
    report.jobs_pruned, report.events_pruned = await retention.prune(sessionmaker, settings, now)
    log.info(
        "sweep: expired_pending=%d expired_unconfirmed=%d orphan_uploads_aborted=%d "
        "leftover_files_removed=%d leftover_bytes_freed=%d jobs_pruned=%d events_pruned=%d "
        "errors=%d",
        report.expired_pending,
        report.expired_unconfirmed,
        report.orphan_uploads_aborted,
        report.leftover_files_removed,
        report.leftover_bytes_freed,
        report.jobs_pruned,
        report.events_pruned,
        len(report.errors),
    )
    return report


# -- expiring records ---------------------------------------------------------------------------


async def _expire_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime,
    *,
    criteria: Sequence[ColumnElement[bool]],
    guard: Sequence[ColumnElement[bool]],
    reason: str,
) -> int:
    """Expire every file matching ``criteria``, a batch per transaction, oldest first (a few
    statements per batch, not a few per file; the loop is given back between batches)."""
    expired = 0
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        async with sessionmaker() as session, session.begin():
            query = select(FileRecord).where(*criteria)
            if after is not None:  # a row value: the index range starts there, on PostgreSQL too
                query = query.where(tuple_(FileRecord.created_at, FileRecord.id) > tuple_(*after))
            query = query.order_by(FileRecord.created_at, FileRecord.id).limit(BATCH)
            batch = list((await session.execute(query)).scalars().all())
            moved = await _expire(session, batch, now, reason, guard)
            await enqueue_purges(session, moved, settings)
            expired += len(moved)
        if len(batch) < BATCH:
            return expired
        after = (batch[-1].created_at, batch[-1].id)
        await asyncio.sleep(0)  # requests waiting for the registry go first


class _NotIndexed(FunctionElement[str]):
    """A column SQLite must not choose an index by (``+column``); elsewhere the column itself.

    The registry has no statistics: SQLite takes ``status = ?`` for a few rows, and would read
    every file of that status through ``ix_files_status_created`` rather than the batch's ids
    through the primary key (a second per batch of completed files at a million rows)."""

    inherit_cache = True
    type = String()
    name = "not_indexed"


@compiles(_NotIndexed)
def _column(element: _NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_NotIndexed, "sqlite")
def _unary_plus(element: _NotIndexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.clauses, **kw)


async def _expire(
    session: AsyncSession,
    records: Sequence[FileRecord],
    now: datetime,
    reason: str,
    guard: Sequence[ColumnElement[bool]],
) -> list[FileRecord]:
    """Move ``records`` from the status each was read in to ``expired``, except those that
    changed since (or for which ``guard`` no longer holds): one ``UPDATE`` per status read.
    Events are appended only for the files this process moved; answer those."""
    moved: list[FileRecord] = []
    for current in sorted({record.status for record in records}):
        ids = [record.id for record in records if record.status == current]
        result = await session.execute(
            update(FileRecord)
            .where(FileRecord.id.in_(ids), _NotIndexed(FileRecord.status) == current, *guard)
            .values(
                status=FileStatus.EXPIRED.value,
                updated_at=now,
                expires_at=now,
                error=reason,
            )
            .returning(FileRecord.id)
            .execution_options(synchronize_session=False)
        )
        changed = set(result.scalars().all())
        for record in records:
            if record.id in changed:
                log.debug(
                    "file %s expired (%s, was %s) key=%s", record.id, reason, current, record.key
                )
                moved.append(record)
    if moved:  # one INSERT (the ORM would insert them one by one to learn their ids)
        events = [
            {
                "file_id": record.id,
                "owner": record.owner,
                "from_status": record.status,
                "to_status": FileStatus.EXPIRED.value,
                "reason": reason,
                "created_at": clock.now(),
                "dispatched": False,
            }
            for record in moved
        ]
        await session.execute(insert(FileEvent), events)
        for _ in moved:
            metered.reached(session, FileStatus.EXPIRED.value)
    return moved


# -- multipart uploads nobody owns ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UploadOwner:
    """What the registry says of the file under an upload's key."""

    status: FileStatus
    upload_id: str | None
    #: A purge job of the file is queued or running: freeing its bytes is that job's work.
    purging: bool = False


def _key_month(key: str) -> tuple[datetime, datetime] | None:
    """The month a key of ours was made in (its start, and the next month's start)."""
    match = _OUR_KEY.fullmatch(key)
    if match is None:
        return None
    year, month = int(match["year"]), int(match["month"])
    if not 1 <= month <= 12 or year < 1970:
        return None
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def begun_by(upload: MultipartUpload) -> datetime | None:
    """The latest moment the upload can have begun, or ``None`` if nothing tells.

    The store's date is believed unless our key proves it wrong: a key of ours names the month
    it was made in, so a date before that month (moto reports 2010 for every upload) or no date
    at all leaves only the month's end as a bound.
    """
    initiated = upload.initiated
    if initiated is not None and initiated.tzinfo is None:
        initiated = initiated.replace(tzinfo=UTC)
    month = _key_month(upload.key)
    if month is None:
        return initiated
    if initiated is not None and initiated >= month[0]:
        return initiated
    return month[1]


def should_abort(upload: MultipartUpload, owner: UploadOwner | None, cutoff: datetime) -> bool:
    """Whether the sweeper aborts ``upload`` (``owner``: the record under its key, if any)."""
    if owner is not None and owner.upload_id == upload.upload_id:
        if owner.status == FileStatus.PENDING:
            return False  # its file's own upload: it expires with its file, never before
        if owner.purging:
            return False  # the purge queued with the file's expiry frees it
        if owner.status in _FINISHED:
            return True  # nobody can use its parts any more
    begun = begun_by(upload)
    return begun is not None and begun < cutoff


async def _owners(
    sessionmaker: async_sessionmaker[AsyncSession], keys: Iterable[str]
) -> dict[str, UploadOwner]:
    purging = (
        exists()
        .where(
            Job.file_id == FileRecord.id,
            Job.kind == PURGE.name,
            Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
        )
        .correlate(FileRecord)
    )
    query = select(
        FileRecord.key, FileRecord.status, FileRecord.multipart_upload_id, purging.label("purging")
    ).where(FileRecord.key.in_(list(keys)))
    async with sessionmaker() as session, session.begin():
        rows = (await session.execute(query)).all()
    return {
        row.key: UploadOwner(FileStatus(row.status), row.multipart_upload_id, bool(row.purging))
        for row in rows
    }


async def _abort_orphans(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    cutoff: datetime,
    report: SweepReport,
) -> None:
    # Listed before the records are read: an upload begun meanwhile is either seen with its
    # record or not listed at all, and one whose record is not written yet is too young.
    try:
        uploads = await storage.list_multipart_uploads(prefix=UPLOAD_PREFIX)
    except StorageUnreachable as exc:
        _unreachable(report, "list multipart uploads", exc)
        return
    except StorageError as exc:
        report.errors.append(f"could not list multipart uploads: {exc}")
        log.warning("sweep could not list multipart uploads: %s", exc)
        return
    for start in range(0, len(uploads), BATCH):
        chunk = uploads[start : start + BATCH]
        owners = await _owners(sessionmaker, {upload.key for upload in chunk})
        for upload in chunk:
            if not should_abort(upload, owners.get(upload.key), cutoff):
                continue
            try:
                await storage.abort_multipart(upload.key, upload.upload_id)
            except UploadNotFound:
                continue  # completed or aborted meanwhile
            except StorageUnreachable as exc:
                _unreachable(report, "abort a multipart upload", exc)
                return
            except StorageError as exc:
                report.errors.append(f"could not abort upload {upload.upload_id}: {exc}")
                log.warning("sweep could not abort upload %s: %s", upload.upload_id, exc)
                continue
            report.orphan_uploads_aborted += 1
            log.info(
                "aborted orphan multipart upload %s key=%s initiated=%s",
                upload.upload_id,
                upload.key,
                upload.initiated.isoformat() if upload.initiated else "unknown",
            )


async def _remove_leftovers(storage: Storage, report: SweepReport) -> None:
    """Remove what writes cut off by a crash left in the store (never a live request's)."""
    if not isinstance(storage, HasLeftovers):
        return
    try:
        removed = await storage.remove_leftovers()
    except (OSError, StorageError) as exc:
        report.errors.append(f"could not remove the store's leftover files: {exc}")
        log.warning("sweep could not remove the store's leftover files: %s", exc)
        return
    report.leftover_files_removed = removed.files
    report.leftover_bytes_freed = removed.bytes


def _unreachable(report: SweepReport, doing: str, exc: StorageError) -> None:
    report.store_unreachable = True
    report.errors.append(f"could not {doing}: {exc}")
    log.warning("sweep could not %s: %s", doing, exc)


# -- the schedule -------------------------------------------------------------------------------


async def _sweep_periodically(ctx: PeriodicContext) -> SweepReport:
    return await sweep(ctx.sessionmaker, ctx.storage, ctx.settings)


def _interval(settings: Settings) -> float:
    return settings.sweep_interval_seconds


#: Sweeps every ``sweep_interval_seconds``, in one process at a time.
SWEEP = Periodic(name="sweep", interval=_interval, run=_sweep_periodically, exclusive=True)
