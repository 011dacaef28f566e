"""What an object event changes: the same confirmation as the client's complete call.

An event is a hint, never evidence. For each one the registry is read, then the store is asked
again about the object, and only what the store answers decides anything. So an event that
arrives twice, late, out of order, or after the client already completed the upload converges
on the same file, and a forged or stale event can change nothing the store does not confirm.

- ``ObjectCreated`` for a pending file: confirm it exactly as ``POST /uploads/{id}/complete``
  does (:func:`bigupload.uploads.service.complete_upload`): present, of the declared size and
  checksum, else ``failed``. A multipart file completed by someone talking to the store
  directly is confirmed too.
- ``ObjectCreated`` for a file already past pending: nothing to do (``duplicate``).
- ``ObjectCreated`` for an expired or aborted file: the bytes landed after bigupload gave up on
  them, so the object is deleted (``late``).
- ``ObjectRemoved``: logged; a warning when a readable file's object is really gone (no status
  change: there is no legal transition for it).
- Any key bigupload does not know, or another bucket: logged and left alone (``unknown``);
  objects bigupload does not know are never deleted.

A store that cannot be reached (or a registry failure) raises: the sender must retry.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bigupload.config import Settings
from bigupload.errors import AppError, store_errors
from bigupload.files import repository
from bigupload.files.models import FileRecord
from bigupload.files.status import READABLE, FileStatus
from bigupload.metrics import catalog as metrics
from bigupload.storage.base import Storage, StoredObject
from bigupload.storage_events.parse import ObjectEvent, parse_document
from bigupload.uploads import service

log = logging.getLogger("bigupload.storage_events")

#: Statuses in which bigupload gave up on a file: bytes that land afterwards are removed.
_ABANDONED = frozenset({FileStatus.EXPIRED, FileStatus.ABORTED})


@dataclass
class EventReport:
    """What a delivery of events did; every event is counted once."""

    #: Pending files this event confirmed (now ``uploaded``).
    confirmed: int = 0
    #: Pending files whose stored object differs from what was declared (now ``failed``).
    failed: int = 0
    #: Files already past ``pending`` (a repeated event, or the client completed first).
    duplicate: int = 0
    #: Files expired or aborted before their bytes landed: the object was deleted.
    late: int = 0
    #: Pending files the store holds no (complete) object for yet: unchanged.
    unconfirmed: int = 0
    #: Keys (or buckets) bigupload does not know: ignored, nothing deleted.
    unknown: int = 0
    #: ``ObjectRemoved`` events for known files.
    removed: int = 0
    #: Of those, readable files whose object is no longer in the store (a warning is logged).
    missing: int = 0

    def counts(self) -> dict[str, int]:
        return asdict(self)

    def __iadd__(self, other: EventReport) -> EventReport:
        for name, value in other.counts().items():
            setattr(self, name, getattr(self, name) + value)
        return self


#: Handles a batch of events, as :func:`event_handler` makes it.
Handle = Callable[[Sequence[ObjectEvent]], Awaitable[EventReport]]


async def handle_events(
    events: Sequence[ObjectEvent],
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    settings: Settings,
    source: str = "webhook",
) -> EventReport:
    """Apply ``events`` in order. Raises :class:`~bigupload.errors.StorageUnavailable` (or
    another 5xx :class:`~bigupload.errors.AppError`, or a registry error) when an event could
    not be applied: the whole delivery should then be retried, which is safe. What they did is
    counted in the metrics under ``source`` (``webhook``, ``sns``, ``sqs``, ``local``)."""
    try:
        report = await _apply(events, sessionmaker, storage, settings)
    except Exception:
        metrics.storage_events(source, {"error": len(events)})
        raise
    metrics.storage_events(source, report.counts())
    return report


async def _apply(
    events: Sequence[ObjectEvent],
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    settings: Settings,
) -> EventReport:
    report = EventReport()
    for event in events:
        if event.bucket != storage.bucket:
            report.unknown += 1
            log.info(
                "storage event %s for bucket %r, not ours (%r): ignored",
                event.event_name,
                event.bucket,
                storage.bucket,
            )
            continue
        if event.created:
            await _created(event, report, sessionmaker, storage, settings)
        elif event.removed:
            await _removed(event, report, sessionmaker, storage)
    return report


def event_handler(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    settings: Settings,
    source: str = "sqs",
) -> Handle:
    """:func:`handle_events` bound to a registry, store, settings and source."""

    async def handle(events: Sequence[ObjectEvent]) -> EventReport:
        return await handle_events(
            events, sessionmaker=sessionmaker, storage=storage, settings=settings, source=source
        )

    return handle


def local_event_sink(
    *, sessionmaker: async_sessionmaker[AsyncSession], storage: Storage, settings: Settings
) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
    """What the local store delivers its S3-shaped notifications to: the same parsing and
    handling as ``POST /storage-events``."""
    handle = event_handler(
        sessionmaker=sessionmaker, storage=storage, settings=settings, source="local"
    )

    async def sink(notification: Mapping[str, Any]) -> None:
        report = await handle(parse_document(notification))
        log.debug("local storage event handled: %s", report.counts())

    return sink


async def _by_key(session: AsyncSession, event: ObjectEvent) -> FileRecord | None:
    result = await session.execute(
        select(FileRecord).where(FileRecord.key == event.key, FileRecord.bucket == event.bucket)
    )
    return result.scalar_one_or_none()


async def _stat(storage: Storage, key: str) -> StoredObject | None:
    with store_errors("describe the object"):
        return await storage.stat(key)


def _unknown(event: ObjectEvent, report: EventReport) -> None:
    report.unknown += 1
    log.info(
        "storage event %s for key %r: no file has this key; ignored, nothing deleted",
        event.event_name,
        event.key,
    )


async def _created(
    event: ObjectEvent,
    report: EventReport,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
    settings: Settings,
) -> None:
    async with sessionmaker() as session:
        record = await _by_key(session, event)
        await session.commit()  # hold no registry connection while the store is asked
        if record is None:
            _unknown(event, report)
            return
        if FileStatus(record.status) == FileStatus.PENDING:
            # Never trust the event: an object must really be there before anything is
            # completed, or a stale event could join a multipart upload still being sent.
            if await _stat(storage, record.key) is None:
                report.unconfirmed += 1
                log.info(
                    "storage event %s for file %s, but the store holds nothing under its key "
                    "yet: left pending",
                    event.event_name,
                    record.id,
                )
                return
            await repository.refresh(session, record)
            if FileStatus(record.status) == FileStatus.PENDING:
                await _confirm(session, record, event, report, storage, settings)
                return
        status = FileStatus(record.status)
    if status in _ABANDONED:
        with store_errors("remove the object of an abandoned upload"):
            await storage.delete(record.key)
        report.late += 1
        log.warning(
            "the object of %s file %s landed after it was given up on: deleted key=%s",
            status.value,
            record.id,
            record.key,
        )
        return
    report.duplicate += 1
    log.debug("storage event %s for %s file %s: nothing to do", event.event_name, status, record.id)


async def _confirm(
    session: AsyncSession,
    record: FileRecord,
    event: ObjectEvent,
    report: EventReport,
    storage: Storage,
    settings: Settings,
) -> None:
    """Confirm a pending file as the client's complete call does."""
    try:
        record = await service.complete_upload(session, record, storage, settings=settings)
        await session.commit()
    except AppError as exc:
        await session.rollback()
        if exc.status >= 500:
            raise
        await repository.refresh(session, record)
        await session.commit()
        status = FileStatus(record.status)
        if status == FileStatus.FAILED:
            report.failed += 1
        elif status == FileStatus.PENDING:
            report.unconfirmed += 1
            log.warning(
                "storage event %s could not confirm file %s: %s (%s)",
                event.event_name,
                record.id,
                exc.message,
                exc.code,
            )
        else:
            report.duplicate += 1  # moved on by a racing call (aborted, expired, ...)
        return
    if FileStatus(record.status) in READABLE:
        report.confirmed += 1
        log.info("file %s confirmed by storage event %s", record.id, event.event_name)
    else:  # pragma: no cover - complete_upload answers only readable files
        report.duplicate += 1


async def _removed(
    event: ObjectEvent,
    report: EventReport,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
) -> None:
    """Log it; warn if a readable file's object is really gone (there is no status for it)."""
    async with sessionmaker() as session:
        record = await _by_key(session, event)
        await session.commit()
    if record is None:
        _unknown(event, report)
        return
    report.removed += 1
    status = FileStatus(record.status)
    if status in READABLE and await _stat(storage, record.key) is None:
        report.missing += 1
        log.warning(
            "the object of %s file %s was removed from the store (%s): it can no longer be "
            "downloaded key=%s",
            status.value,
            record.id,
            event.event_name,
            record.key,
        )
        return
    log.info("storage event %s for %s file %s", event.event_name, status.value, record.id)
