"""Group commit of new file records: shared transactions, and failures kept to their row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select
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
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda conn: commits.append(1))
    inserter = FileInserter(create_sessionmaker(engine))
    await asyncio.gather(*(inserter.insert(record()) for _ in range(50)))
    assert await counts(engine) == (50, 50)
    assert len(commits) == 1


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
