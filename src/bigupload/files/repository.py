"""SQL for file records and their status events."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.status import FileStatus


class InvalidCursor(ValueError):
    """A pagination cursor we did not make."""


def encode_cursor(record: FileRecord) -> str:
    raw = f"{record.created_at.isoformat()}|{record.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, ident = raw.split("|", 1)
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor(cursor) from exc


def add_event(
    session: AsyncSession,
    record: FileRecord,
    from_status: str | None,
    to_status: str,
    reason: str | None = None,
) -> None:
    session.add(
        FileEvent(
            file_id=record.id,
            owner=record.owner,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            created_at=clock.now(),
        )
    )


async def get_owned(session: AsyncSession, file_id: uuid.UUID, owner: str) -> FileRecord | None:
    result = await session.execute(
        select(FileRecord).where(FileRecord.id == file_id, FileRecord.owner == owner)
    )
    return result.scalar_one_or_none()


async def by_idempotency_key(session: AsyncSession, owner: str, key: str) -> FileRecord | None:
    """The file ``owner`` began with the ``Idempotency-Key`` ``key``, if any."""
    result = await session.execute(
        select(FileRecord).where(FileRecord.owner == owner, FileRecord.idempotency_key == key)
    )
    return result.scalar_one_or_none()


async def refresh(session: AsyncSession, record: FileRecord) -> FileRecord:
    await session.refresh(record)
    return record


async def list_owned(
    session: AsyncSession,
    owner: str,
    *,
    limit: int,
    cursor: str | None = None,
    statuses: Sequence[FileStatus] = (),
    content_type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    id_prefix: str | None = None,
) -> tuple[list[FileRecord], str | None]:
    """One page of the owner's files, newest first, and the cursor of the next page.

    ``id_prefix`` (lower-case hex, no dashes) keeps the ids that begin with it: the range of
    UUIDs from the prefix padded with ``0`` to it padded with ``f``, on any backend's UUID type.
    """
    query = select(FileRecord).where(FileRecord.owner == owner)
    if id_prefix:
        low = uuid.UUID(id_prefix.ljust(32, "0"))
        high = uuid.UUID(id_prefix.ljust(32, "f"))
        query = query.where(FileRecord.id >= low, FileRecord.id <= high)
    if statuses:
        query = query.where(FileRecord.status.in_([s.value for s in statuses]))
    if content_type:
        if content_type.endswith("/*"):
            query = query.where(FileRecord.content_type.startswith(content_type[:-1]))
        else:
            query = query.where(FileRecord.content_type == content_type)
    if created_after:
        query = query.where(FileRecord.created_at >= created_after)
    if created_before:
        query = query.where(FileRecord.created_at < created_before)
    if cursor:
        created, ident = decode_cursor(cursor)
        query = query.where(
            or_(
                FileRecord.created_at < created,
                and_(FileRecord.created_at == created, FileRecord.id < ident),
            )
        )
    query = query.order_by(FileRecord.created_at.desc(), FileRecord.id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars().all())
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def transition(
    session: AsyncSession,
    record: FileRecord,
    expected: FileStatus,
    target: FileStatus,
    *,
    reason: str | None = None,
    **values: Any,
) -> bool:
    """Move ``record`` from ``expected`` to ``target`` unless someone else moved it first.

    The change is a conditional UPDATE, so of two racing callers exactly one wins; the loser
    gets ``False`` and should re-read the record. The event is appended only by the winner.
    """
    now = clock.now()
    result = await session.execute(
        update(FileRecord)
        .where(FileRecord.id == record.id, FileRecord.status == expected.value)
        .values(status=target.value, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return False
    add_event(session, record, expected.value, target.value, reason)
    await session.flush()
    await session.refresh(record)
    return True


async def delete_record(session: AsyncSession, record: FileRecord) -> None:
    await session.execute(delete(FileRecord).where(FileRecord.id == record.id))
    add_event(session, record, record.status, "deleted")
    await session.flush()
