"""SQL for file records and their status events."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    ScalarSelect,
    Select,
    delete,
    func,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from bigupload import clock
from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.status import FileStatus
from bigupload.metrics import files as metered


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


#: Beyond this many (status, content type) pairs a list is one query with ``IN`` lists.
MAX_ARMS = 64
#: An ``id_prefix`` this long is looked up by the id's range (shorter: the owner's newest first).
ID_RANGE_DIGITS = 3
#: At most this many distinct content types are looked at to resolve a range (``video/*``).
MAX_TYPES = 1000


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

    Every page is a range of one of the ``files`` indexes read backwards from its end (owner,
    then status and/or content type, then ``created_at, id``): with one status and one content
    type the query is that range; with several (``status`` repeated, or a range of types such
    as ``video/*``, resolved first to the types the owner has in it) it is a ``UNION ALL`` of
    one range per pair, which both backends merge in order (SQLite's ``MERGE``, PostgreSQL's
    ``Merge Append``), reading only about ``limit`` rows in all. An ``IN`` list would instead
    read every matching row and sort them, however many there are.
    """
    types: list[str | None] = [None]
    unresolved: str | None = None  # a range of more types than are worth a seek each
    if content_type and content_type.endswith("/*"):
        found = await types_in_range(session, owner, content_type[:-1])
        if found is None:
            unresolved = content_type[:-1]
        elif not found:
            return [], None
        else:
            types = list(found)
    elif content_type:
        types = [content_type]
    status_values: list[str | None] = [s.value for s in dict.fromkeys(statuses)] or [None]

    # A prefix of three digits or more leaves at most 1/4096 of all ids: their range of the
    # primary key is read, and the page sorted. SQLite would rather walk the owner's index (it
    # has no statistics): a unary ``+`` keeps its other terms from choosing an index.
    by_id = id_prefix is not None and len(id_prefix) >= ID_RANGE_DIGITS
    plain = _unindexed if by_id and session.get_bind().dialect.name == "sqlite" else _as_is
    common = [plain(FileRecord.owner) == owner]
    if id_prefix:
        low = uuid.UUID(id_prefix.ljust(32, "0"))
        high = uuid.UUID(id_prefix.ljust(32, "f"))
        common += [FileRecord.id >= low, FileRecord.id <= high]
    if created_after:
        common.append(FileRecord.created_at >= created_after)
    if created_before:
        common.append(FileRecord.created_at < created_before)
    if cursor:
        created, ident = decode_cursor(cursor)
        # A row value, so that both backends start the index range at the cursor (an OR of
        # "older, or as old with a smaller id" is a filter, read past from the newest row).
        common.append(tuple_(FileRecord.created_at, FileRecord.id) < tuple_(created, ident))
    newest_first = (FileRecord.created_at.desc(), FileRecord.id.desc())

    def arm(status: str | None, kind: str | None) -> Select[FileRecord]:
        query = select(FileRecord).where(*common)
        if status is not None:
            query = query.where(plain(FileRecord.status) == status)
        if kind is not None:
            query = query.where(plain(FileRecord.content_type) == kind)
        return query

    pairs = [(s, t) for s in status_values for t in types]
    statement: Executable
    if unresolved is not None or len(pairs) > MAX_ARMS:
        # Correct, not fast: one query with IN lists (or the prefix), sorted by the backend.
        query = select(FileRecord).where(*common)
        if statuses:
            query = query.where(FileRecord.status.in_([s for s in status_values if s]))
        if unresolved is not None:
            query = query.where(FileRecord.content_type.startswith(unresolved, autoescape=True))
        elif content_type:
            query = query.where(FileRecord.content_type.in_([t for t in types if t]))
        statement = query.order_by(*newest_first).limit(limit + 1)
    elif len(pairs) == 1:
        statement = arm(*pairs[0]).order_by(*newest_first).limit(limit + 1)
    else:
        # SQLite merges the arms in order, pulling rows from each as needed (its MERGE of a
        # UNION ALL). PostgreSQL appends them and sorts: each arm gets its own order and limit,
        # so each reads at most a page from its index, and the sort is of those pages.
        arms = [arm(s, t) for s, t in pairs]
        if session.get_bind().dialect.name != "sqlite":
            arms = [a.order_by(*newest_first).limit(limit + 1) for a in arms]
        page = aliased(FileRecord, union_all(*arms).subquery("page"))
        statement = select(page).order_by(page.created_at.desc(), page.id.desc()).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars().all())
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _as_is(column: InstrumentedAttribute[str]) -> ColumnElement[str]:
    return column.expression


def _unindexed(column: InstrumentedAttribute[str]) -> ColumnElement[str]:
    """SQLite's ``+column``: the same value, but no index is chosen for a term on it."""
    return UnaryExpression(column.expression, operator=custom_op("+"), type_=column.type)


async def types_in_range(session: AsyncSession, owner: str, prefix: str) -> list[str] | None:
    """The distinct content types beginning with ``prefix`` that ``owner``'s files have.

    A loose index scan of ``ix_files_owner_type_created``: each step is one seek to the next
    type, so the cost is the number of types, not of files. SQLite compares text bytewise, so
    the range ends where the prefix does; PostgreSQL's collation may order ``video/mp4`` after
    ``videox``, so there the types from the prefix on are read (at most :data:`MAX_TYPES`) and
    kept when they begin with it. ``None`` if there were more (the caller filters by prefix).
    """
    bounded = session.get_bind().dialect.name == "sqlite"
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)

    def next_type(after: ColumnElement[str] | None) -> ScalarSelect[str]:
        query = select(func.min(FileRecord.content_type)).where(FileRecord.owner == owner)
        column = FileRecord.content_type
        query = query.where(column > after if after is not None else column >= prefix)
        if bounded:
            query = query.where(FileRecord.content_type < end)
        return query.scalar_subquery()

    found = select(next_type(None).label("kind")).cte("found", recursive=True)
    found = found.union_all(select(next_type(found.c.kind)).where(found.c.kind.is_not(None)))
    query = select(found.c.kind).where(found.c.kind.is_not(None)).limit(MAX_TYPES + 1)
    kinds = [str(kind) for kind in (await session.execute(query)).scalars()]
    if len(kinds) > MAX_TYPES:
        return None
    return [kind for kind in kinds if kind.startswith(prefix)]


async def transition(
    session: AsyncSession,
    record: FileRecord,
    expected: FileStatus,
    target: FileStatus,
    *,
    reason: str | None = None,
    failure: str | None = None,
    **values: Any,
) -> bool:
    """Move ``record`` from ``expected`` to ``target`` unless someone else moved it first.

    The change is a conditional UPDATE, so of two racing callers exactly one wins; the loser
    gets ``False`` and should re-read the record. The event is appended only by the winner.
    ``failure`` names the class of a failure for the metrics (else the reason's prefix).
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
    uploaded = target == FileStatus.UPLOADED
    metered.reached(
        session,
        target.value,
        reason=reason,
        failure=failure,
        size=record.stored_size if uploaded else None,
    )
    return True


async def delete_record(session: AsyncSession, record: FileRecord) -> None:
    await session.execute(delete(FileRecord).where(FileRecord.id == record.id))
    add_event(session, record, record.status, "deleted")
    await session.flush()
