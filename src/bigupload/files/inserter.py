"""Group commit for new file records: concurrent uploads share one transaction.

Each caller waits until the transaction holding its row has committed, so nobody answers for
an uncommitted record. Rows that arrive while a batch is being written form the next batch:
under load many rows share one commit, and a lone request pays for one transaction as before.

A batch is two Core inserts on one connection of the engine, in one call into SQLAlchemy's
synchronous side (no ORM session, no unit of work, one greenlet switch for the whole
transaction); on SQLite, in one call on the driver's thread instead
(:mod:`bigupload.files.sqlite_batch`: one thread hand-off, not one per cursor operation); on
PostgreSQL, as one statement (:mod:`bigupload.files.postgres_batch`: one round trip). Open
event streams and the outbox dispatcher are told of the new events once it has
committed, as they are of any session's (:mod:`bigupload.jobs.wakeups`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Connection, Table, inspect
from sqlalchemy import insert as insert_stmt
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.postgres_batch import PostgresBatch
from bigupload.files.sqlite_batch import SQLiteBatch
from bigupload.jobs import wakeups


def _column(attr: Any) -> tuple[str, str, Callable[[], Any] | None]:
    """(attribute, column, what makes the column's default, if it has one) of a mapped
    attribute: a scalar default, or a Python callable's (``dict``) called afresh per row."""
    default = attr.columns[0].default
    make: Callable[[], Any] | None = None
    if default is not None and default.is_scalar:
        make = functools.partial(lambda value: value, default.arg)
    elif default is not None and default.is_callable:
        make = functools.partial(default.arg, None)  # SQLAlchemy's wrapper takes a context
    return attr.key, attr.columns[0].key, make


_FILE_COLUMNS = tuple(_column(attr) for attr in inspect(FileRecord).column_attrs)
_INSERT_FILE = insert_stmt(cast(Table, FileRecord.__table__))
_INSERT_EVENT = insert_stmt(cast(Table, FileEvent.__table__))
#: The keys of the rows :func:`_rows` makes.
_FILE_KEYS = tuple(column for _, column, _ in _FILE_COLUMNS)
_EVENT_KEYS = ("file_id", "owner", "from_status", "to_status", "reason", "created_at")


def _rows(record: FileRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    # A new record's values are in its ``__dict__`` (an unset attribute is absent, and reads as
    # None); an unset or None value takes the column's default, as a flush would.
    values = record.__dict__
    file_row: dict[str, Any] = {}
    for attr, column, default in _FILE_COLUMNS:
        value = values.get(attr)
        file_row[column] = default() if value is None and default is not None else value
    event_row = {  # the keys of _EVENT_KEYS
        "file_id": record.id,
        "owner": record.owner,
        "from_status": None,
        "to_status": record.status,
        "reason": None,
        "created_at": record.created_at,
    }
    return file_row, event_row


class FileInserter:
    """Insert new records, with their first status event, in shared transactions.

    Callers must not hold a registry connection while they wait (commit their session first):
    the batch needs one, and on SQLite there is only one.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], max_batch: int = 500):
        engine = sessionmaker.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("the sessionmaker must be bound to an AsyncEngine")
        self._engine = engine
        self._sqlite = (
            SQLiteBatch(engine, (_INSERT_FILE, _FILE_KEYS), (_INSERT_EVENT, _EVENT_KEYS))
            if SQLiteBatch.supports(engine)
            else None
        )
        self._postgres = (
            PostgresBatch(
                (cast(Table, FileRecord.__table__), _FILE_KEYS),
                (cast(Table, FileEvent.__table__), _EVENT_KEYS),
            )
            if PostgresBatch.supports(engine)
            else None
        )
        self._max_batch = max_batch
        self._pending: list[tuple[dict[str, Any], dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, record: FileRecord) -> None:
        """Return once ``record`` and its event are committed; raise if their batch failed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((*_rows(record), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        await asyncio.shield(done)

    async def _write_all(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await self._write(batch)
            except Exception:
                if len(batch) == 1:
                    continue  # its caller has the error
                # One bad row must not fail the others: write each alone, so only it fails.
                for row in batch:
                    with contextlib.suppress(Exception):
                        await self._write([row])

    async def _write(
        self, batch: list[tuple[dict[str, Any], dict[str, Any], asyncio.Future[None]]]
    ) -> None:
        files = [file for file, _, _ in batch]
        events = [event for _, event, _ in batch]

        def write(connection: Connection) -> None:
            with connection.begin():
                connection.execute(_INSERT_FILE, files)
                connection.execute(_INSERT_EVENT, events)
                wakeups.notify_in(connection, wakeups.EVENTS)

        try:
            # Not ``async with``: its exit closes in a task of its own, a task per batch. This
            # task is the inserter's, which its callers never cancel (they shield it).
            connection = await self._engine.connect()
            try:
                if self._sqlite is not None and self._sqlite.applies(connection):
                    await self._sqlite.run(connection, files, events)
                elif self._postgres is not None:
                    notification = wakeups.payload_of(wakeups.EVENTS)
                    await self._postgres.run(
                        connection, wakeups.CHANNEL, notification, files, events
                    )
                else:
                    await connection.run_sync(write)
            finally:
                await connection.close()
        except BaseException as exc:
            if len(batch) == 1 or not isinstance(exc, Exception):
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            raise
        # Here, not at the top: the stream's module needs the API's dependencies, which need this.
        from bigupload.notifications.stream import BELL

        BELL.ring({event["owner"] for event in events})
        wakeups.wake_local(wakeups.EVENTS)
        for _, _, done in batch:
            if not done.done():
                done.set_result(None)
