"""Group commit of new file records: shared transactions, and failures kept to their row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bigupload import migrate
from bigupload.db import create_engine, create_sessionmaker
from bigupload.files.inserter import FileInserter
from bigupload.files.models import FileEvent, FileRecord


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


def record(file_id: uuid.UUID | None = None, key: str | None = None) -> FileRecord:
    file_id = file_id or uuid.uuid4()
    now = datetime.now(UTC)
    return FileRecord(
        id=file_id,
        owner="alice",
        bucket="local",
        key=key or f"uploads/alice/{file_id}",
        filename="a.bin",
        content_type="application/octet-stream",
        size=10,
        status="pending",
        user_metadata={},
        created_at=now,
        updated_at=now,
    )


async def counts(engine: AsyncEngine) -> tuple[int, int]:
    async with create_sessionmaker(engine)() as session:
        files = await session.scalar(select(func.count()).select_from(FileRecord))
        events = await session.scalar(select(func.count()).select_from(FileEvent))
    return int(files or 0), int(events or 0)


async def test_concurrent_inserts_share_one_commit(engine: AsyncEngine) -> None:
    """On SQLite one transaction of two inserts; on PostgreSQL one statement, outside any
    transaction block (its own transaction), that inserts both."""
    commits: list[int] = []
    inserts: list[str] = []
    event.listen(engine.sync_engine, "commit", lambda conn: commits.append(1))

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "INSERT INTO files" in statement:
            inserts.append(statement)

    inserter = FileInserter(create_sessionmaker(engine))
    await asyncio.gather(*(inserter.insert(record()) for _ in range(50)))
    assert await counts(engine) == (50, 50)
    assert len(inserts) == 1
    if engine.dialect.name == "postgresql":
        assert commits == []
        assert "INSERT INTO file_events" in inserts[0] and "pg_notify" in inserts[0]
    else:
        assert len(commits) == 1


async def test_a_batch_reads_back_as_it_was_given(engine: AsyncEngine) -> None:
    """Every column's value, through the batch's own encoding (arrays on PostgreSQL)."""
    inserter = FileInserter(create_sessionmaker(engine))
    given = [record() for _ in range(3)]
    given[0].user_metadata = {"project": "ünï", "n": [1, 2]}
    given[0].size = 5 * 2**40
    given[1].part_checksums = True
    given[1].multipart_upload_id = "up-1"
    given[1].part_size = 16 * 2**20
    given[2].idempotency_key = "k-2"
    given[2].expires_at = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    attrs = [a.key for a in inspect(FileRecord).column_attrs]
    expected = [{a: getattr(r, a) for a in attrs} for r in given]
    await asyncio.gather(*(inserter.insert(r) for r in given))
    async with create_sessionmaker(engine)() as session:
        for want in expected:
            found = await session.get(FileRecord, want["id"])
            assert found is not None
            got = {a: getattr(found, a) for a in attrs}
            # Unset: the columns' defaults, as a flush gives them.
            assert got == want | {"results": {}, "part_checksums": bool(want["part_checksums"])}
        events = (await session.scalars(select(FileEvent).order_by(FileEvent.id))).all()
    assert [(e.file_id, e.from_status, e.to_status) for e in events] == [
        (r.id, None, "pending") for r in given
    ]


async def test_each_caller_returns_only_after_its_row_is_committed(engine: AsyncEngine) -> None:
    inserter = FileInserter(create_sessionmaker(engine))
    mine = record()
    await inserter.insert(mine)
    async with create_sessionmaker(engine)() as other:  # another connection sees it
        found = await other.get(FileRecord, mine.id)
    assert found is not None and found.key == mine.key


async def test_a_bad_row_fails_alone(engine: AsyncEngine) -> None:
    inserter = FileInserter(create_sessionmaker(engine))
    taken = record()
    await inserter.insert(taken)
    duplicate = record(key=taken.key)  # the key is unique
    results = await asyncio.gather(
        inserter.insert(record()),
        inserter.insert(duplicate),
        inserter.insert(record()),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], IntegrityError)
    assert await counts(engine) == (3, 3)
    await inserter.insert(record())  # the inserter keeps working
    assert await counts(engine) == (4, 4)
