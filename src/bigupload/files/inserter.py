"""Group commit for new file records: concurrent uploads share one transaction.

Each caller waits until the transaction holding its row has committed, so nobody answers for
an uncommitted record. Rows that arrive while a batch is being written form the next batch:
under load many rows share one commit, and a lone request pays for one transaction as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from sqlalchemy import Table, inspect
from sqlalchemy import insert as insert_stmt
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bigupload.files.models import FileEvent, FileRecord

_FILE_COLUMNS = tuple(inspect(FileRecord).column_attrs)
_INSERT_FILE = insert_stmt(cast(Table, FileRecord.__table__))
_INSERT_EVENT = insert_stmt(cast(Table, FileEvent.__table__))


def _value(record: FileRecord, attr: Any) -> Any:
    """The attribute's value, or its column's scalar default when unset (as a flush would)."""
    value = getattr(record, attr.key)
    default = attr.columns[0].default
    if value is None and default is not None and default.is_scalar:
        return default.arg
    return value


def _rows(record: FileRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    file_row = {attr.columns[0].key: _value(record, attr) for attr in _FILE_COLUMNS}
    event_row = {
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
        self._sessionmaker = sessionmaker
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
        try:
            async with self._sessionmaker() as session, session.begin():
                await session.execute(_INSERT_FILE, [file for file, _, _ in batch])
                await session.execute(_INSERT_EVENT, [event for _, event, _ in batch])
        except BaseException as exc:
            if len(batch) == 1 or not isinstance(exc, Exception):
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            raise
        for _, _, done in batch:
            if not done.done():
                done.set_result(None)
