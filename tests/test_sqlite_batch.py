"""SQLite batches in one call on aiosqlite's thread: the same rows, the same errors, one hand-off.

Each test compares the batch with the same inserts through SQLAlchemy (the path the inserter
takes on PostgreSQL, and on SQLite while anyone listens to the engine's statements).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiosqlite
import pytest
from sqlalchemy import Table, event, func, insert, inspect, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from bigupload import migrate
from bigupload.db import create_engine, create_sessionmaker
from bigupload.db_errors import problem_of
from bigupload.files.inserter import FileInserter
from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.sqlite_batch import SQLiteBatch
from tests.support.statements import statements_of

#: The two ways a batch is written.
PATHS = ("batch", "sqlalchemy")


async def registry(path: Path, timeout: float | None = None) -> AsyncEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{path}", timeout=timeout)
    await migrate.upgrade(engine)
    return engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await registry(tmp_path / "registry.db")
    yield engine
    await engine.dispose()


@contextmanager
def written_by(path: str, engine: AsyncEngine) -> Iterator[None]:
    """Inserts in the block go through ``path``: a statement listener sends the inserter
    through SQLAlchemy, as it must (the listener would not see the batch's statements)."""
    if path == "batch":
        yield
        return
    with statements_of(engine) as seen:
        yield
    assert seen.transactions, "not written through SQLAlchemy"


@contextmanager
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """The functions given to aiosqlite's thread in the block."""
    calls: list[object] = []
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    yield calls
    monkeypatch.undo()


T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def full_record(file_id: uuid.UUID) -> FileRecord:
    """Every column given a value (none left to a default)."""
    return FileRecord(
        id=file_id,
        owner="alice",
        bucket="bucket",
        key=f"uploads/alice/{file_id}",
        filename="résumé.pdf",
        content_type="application/pdf",
        detected_content_type="application/pdf",
        size=12345678901,
        stored_size=12345678901,
        checksum_sha256="ab" * 32,
        etag='"etag-1"',
        status="uploaded",
        multipart_upload_id="upload-1",
        part_size=8 * 1024 * 1024,
        part_checksums=True,
        user_metadata={"project": "ünïcode", "n": [1, 2.5, None, True]},
        error="an error",
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1),
        uploaded_at=T0 + timedelta(seconds=2),
        completed_at=T0 + timedelta(seconds=3),
        expires_at=T0 + timedelta(days=1),
        confirmed_at=T0 + timedelta(seconds=4),
        results={"scan": {"clean": True}},
        idempotency_key="key-1",
    )


def minimal_record(file_id: uuid.UUID) -> FileRecord:
    """Only what a new record must have (its status is its first event's): every other
    column's default, or None."""
    return FileRecord(
        id=file_id,
        owner="bob",
        bucket="bucket",
        key=f"uploads/bob/{file_id}",
        filename="a.bin",
        content_type="application/octet-stream",
        status="pending",
        created_at=T0,
        updated_at=T0,
    )


def record(key: str | None = None) -> FileRecord:
    file_id = uuid.uuid4()
    made = minimal_record(file_id)
    made.key = key or made.key
    return made


async def read_back(engine: AsyncEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every column of every file and event, read through the ORM, in insertion order."""

    def values(row: Any) -> dict[str, Any]:
        return {attr.key: getattr(row, attr.key) for attr in inspect(type(row)).column_attrs}

    async with create_sessionmaker(engine)() as session:
        files = (await session.scalars(select(FileRecord).order_by(FileRecord.key))).all()
        events = (await session.scalars(select(FileEvent).order_by(FileEvent.id))).all()
        return [values(f) for f in files], [values(e) for e in events]


def stored(path: Path) -> list[list[tuple[Any, ...]]]:
    """The rows as SQLite holds them: each value with its storage class."""
    with sqlite3.connect(path) as connection:
        tables = []
        for table in ("files", "file_events"):
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            listed = ", ".join(f'"{c}", typeof("{c}")' for c in columns)
            query = f"SELECT {listed} FROM {table} ORDER BY rowid"
            tables.append(connection.execute(query).fetchall())
    connection.close()
    return tables


async def test_rows_read_back_as_those_inserted_through_sqlalchemy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [uuid.uuid4(), uuid.uuid4(), uuid.uuid4()]

    def records() -> list[FileRecord]:  # the same for both registries, new objects
        return [full_record(ids[0]), minimal_record(ids[1]), minimal_record(ids[2])]

    found = {}
    for path in PATHS:
        engine = await registry(tmp_path / f"{path}.db")
        try:
            inserter = FileInserter(create_sessionmaker(engine))
            with written_by(path, engine), hand_offs(monkeypatch) as calls:
                first, *others = records()
                await inserter.insert(first)  # a batch of one row
                await asyncio.gather(*(inserter.insert(r) for r in others))  # of two
            if path == "batch":
                assert len(calls) == 2
            found[path] = await read_back(engine)
        finally:
            await engine.dispose()
    assert found["batch"] == found["sqlalchemy"]
    files, events = found["batch"]
    assert {f["id"] for f in files} == set(ids)
    assert len(events) == 3 and all(e["dispatched"] is False for e in events)
    assert stored(tmp_path / "batch.db") == stored(tmp_path / "sqlalchemy.db")


async def test_parameters_are_those_sqlalchemy_binds(engine: AsyncEngine) -> None:
    table = cast(Table, FileEvent.__table__)
    keys = ("file_id", "owner", "from_status", "to_status", "reason", "created_at")
    batch = SQLiteBatch(engine, (insert(table), keys))
    rows = [
        {"file_id": uuid.uuid4(), "owner": "o", "from_status": None, "to_status": "pending"}
        | {"reason": reason, "created_at": T0}
        for reason in (None, "why")
    ]
    with statements_of(engine) as seen:
        async with engine.begin() as connection:
            await connection.execute(insert(table), rows)
    ((statement, parameters),) = seen.executed
    compiled = batch.inserts[0]
    assert compiled.statement == statement
    assert [compiled.parameters(row) for row in rows] == list(parameters)


async def test_a_batch_of_concurrent_inserts_is_one_hand_off_to_the_drivers_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserter = FileInserter(create_sessionmaker(engine))
    await inserter.insert(record())  # the pool's connection is opened
    with hand_offs(monkeypatch) as calls:
        await asyncio.gather(*(inserter.insert(record()) for _ in range(50)))
    assert len(calls) == 1
    async with create_sessionmaker(engine)() as session:
        assert await session.scalar(select(func.count()).select_from(FileRecord)) == 51
        assert await session.scalar(select(func.count()).select_from(FileEvent)) == 51


async def test_statement_listeners_see_the_inserts(engine: AsyncEngine) -> None:
    commits: list[object] = []
    event.listen(engine.sync_engine, "commit", commits.append)
    with statements_of(engine) as seen:
        await FileInserter(create_sessionmaker(engine)).insert(record())
    assert len(seen.starting("INSERT INTO files")) == 1
    assert len(seen.starting("INSERT INTO file_events")) == 1
    assert len(commits) == 1


def error_of(exc: BaseException) -> tuple[Any, ...]:
    """What callers see of a registry error."""
    assert isinstance(exc, DBAPIError)
    orig = exc.orig
    return (
        type(exc),
        type(orig),
        getattr(orig, "sqlite_errorcode", None),
        str(orig),
        exc.statement,
        exc.connection_invalidated,
        problem_of(exc),
    )


async def test_a_failed_statement_raises_as_through_sqlalchemy_and_leaves_nothing(
    engine: AsyncEngine,
) -> None:
    inserter = FileInserter(create_sessionmaker(engine))
    taken = record()
    await inserter.insert(taken)
    errors = []
    for path in PATHS:
        with written_by(path, engine), pytest.raises(IntegrityError) as raised:
            await inserter.insert(record(key=taken.key))
        errors.append(error_of(raised.value))
    assert errors[0] == errors[1]
    assert errors[0][-1] is None  # a bug (a 500), not an outage
    assert str(errors[0][4]).startswith("INSERT INTO files")

    # A statement failing after another: the whole transaction is rolled back.
    table = cast(Table, FileEvent.__table__)
    keys = ("id", "file_id", "owner", "from_status", "to_status", "reason", "created_at")
    batch = SQLiteBatch(engine, (insert(table), keys), (insert(table), keys))
    row = {"id": 10**6, "file_id": uuid.uuid4(), "owner": "o", "from_status": None}
    row |= {"to_status": "pending", "reason": None, "created_at": T0}
    async with engine.connect() as connection:
        with pytest.raises(IntegrityError):
            await batch.run(connection, [row], [row])  # the same id twice
    async with create_sessionmaker(engine)() as session:
        assert await session.get(FileEvent, 10**6) is None
    await inserter.insert(record())  # the connection is usable again


async def test_a_locked_registry_raises_as_through_sqlalchemy(tmp_path: Path) -> None:
    engine = await registry(tmp_path / "registry.db", timeout=0.05)
    holder = sqlite3.connect(tmp_path / "registry.db", isolation_level=None)
    try:
        inserter = FileInserter(create_sessionmaker(engine))
        await inserter.insert(record())
        holder.execute("BEGIN IMMEDIATE")
        errors = []
        for path in PATHS:
            with written_by(path, engine), pytest.raises(OperationalError) as raised:
                await inserter.insert(record())
            errors.append(error_of(raised.value))
        assert errors[0] == errors[1]
        assert errors[0][-1] == "locked"
        holder.rollback()
        await inserter.insert(record())
    finally:
        holder.close()
        await engine.dispose()


async def test_a_lost_driver_connection_raises_as_through_sqlalchemy(engine: AsyncEngine) -> None:
    inserter = FileInserter(create_sessionmaker(engine))
    errors = []
    for path in PATHS:
        await inserter.insert(record())
        async with engine.connect() as connection:  # the pool's one connection
            raw = await connection.get_raw_connection()
            await cast(aiosqlite.Connection, raw.driver_connection).close()
        with written_by(path, engine), pytest.raises(OperationalError) as raised:
            await inserter.insert(record())
        errors.append(error_of(raised.value))
        await inserter.insert(record())  # the pool replaced the connection
    assert errors[0] == errors[1]
    assert errors[0][-2:] == (True, "unreachable")
