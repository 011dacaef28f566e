"""Every list of ``GET /files`` is a range of an index, read in order: no scan of the table and
no sort of what matched, on SQLite (``EXPLAIN QUERY PLAN``) and PostgreSQL (``EXPLAIN``).

A structural check, not a timing: a plan that scans or sorts is what made a page of a million
rows take seconds. The statements are the ones ``repository.list_owned`` sends, caught as they
are executed, then explained with the same parameters. PostgreSQL is asked with sequential
scans and sorts priced out (its choice on a few rows is not its choice on a million): what is
left must still be an index range; the only sort allowed is of the pages of several arms.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bigupload import migrate
from bigupload.db import create_engine, create_sessionmaker
from bigupload.files import repository
from bigupload.files.models import FileRecord
from bigupload.files.status import FileStatus

OWNER = "alice"
START = datetime(2026, 1, 1, tzinfo=UTC)
CURSOR = repository.encode_cursor(
    FileRecord(created_at=START + timedelta(days=3), id=uuid.UUID(int=7 << 120))
)
TYPES = ("video/mp4", "video/webm", "image/png", "application/pdf")
STATUSES = [FileStatus.COMPLETED, FileStatus.FAILED, FileStatus.PENDING]

FILTERS: dict[str, dict[str, Any]] = {
    "owner": {},
    "status": {"statuses": [FileStatus.COMPLETED]},
    "statuses": {"statuses": [FileStatus.FAILED, FileStatus.EXPIRED]},
    "type": {"content_type": "video/mp4"},
    "type range": {"content_type": "video/*"},
    "dates": {"created_after": START, "created_before": START + timedelta(days=2)},
    "status and type": {"statuses": [FileStatus.FAILED], "content_type": "image/png"},
    "statuses and type range": {
        "statuses": [FileStatus.COMPLETED, FileStatus.FAILED],
        "content_type": "video/*",
    },
    "status, type and dates": {
        "statuses": [FileStatus.COMPLETED],
        "content_type": "video/mp4",
        "created_after": START,
        "created_before": START + timedelta(days=2),
    },
    "cursor": {"cursor": CURSOR},
    "cursor and status": {"cursor": CURSOR, "statuses": [FileStatus.FAILED]},
    "cursor and type range": {"cursor": CURSOR, "content_type": "video/*"},
    "short id prefix": {"id_prefix": "7"},
    "id prefix": {"id_prefix": "7000"},
    "id prefix and status": {"id_prefix": "7000", "statuses": [FileStatus.FAILED]},
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    rows = []
    for n in range(200):
        file_id = uuid.UUID(int=(n % 16) << 124 | n)
        rows.append(
            {
                "id": file_id,
                "owner": OWNER if n % 3 else "bob",
                "bucket": "b",
                "key": f"uploads/{n}",
                "filename": f"{n}.bin",
                "content_type": TYPES[n % len(TYPES)],
                "size": n,
                "status": STATUSES[n % len(STATUSES)].value,
                "metadata": {},
                "results": {},
                "created_at": START + timedelta(hours=n),
                "updated_at": START + timedelta(hours=n),
            }
        )
    async with engine.begin() as connection:
        await connection.execute(insert(FileRecord.__table__), rows)  # type: ignore[arg-type]
    yield engine
    await engine.dispose()


async def plans(engine: AsyncEngine, **filters: Any) -> list[list[str]]:
    """The plan of each statement one ``list_owned`` call sends, a line per step."""
    sent: list[tuple[str, Any]] = []

    def catch(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append((statement, params))

    event.listen(engine.sync_engine, "before_cursor_execute", catch)
    try:
        async with create_sessionmaker(engine)() as session:
            await repository.list_owned(session, OWNER, limit=50, **filters)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", catch)
    found = []
    async with engine.connect() as connection:
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            await connection.exec_driver_sql("SET enable_seqscan = off")
            await connection.exec_driver_sql("SET enable_sort = off")
        for statement, params in sent:
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            result = await connection.exec_driver_sql(explain + statement, params)
            found.append([str(row[-1]).strip() for row in result])
    return found


def assert_index_range(dialect: str, plan: list[str]) -> None:
    text = "\n".join(plan)
    if dialect == "sqlite":
        assert "SCAN files" not in text, text
        assert "TEMP B-TREE" not in text, text
        assert "USING INDEX" in text or "USING COVERING INDEX" in text, text
        return
    assert "Seq Scan" not in text, text
    assert "Index" in text, text
    for n, line in enumerate(plan):
        if "Sort  " in line and "Merge Append" not in line:
            # Only the pages of several arms are sorted: an Append of Limits.
            below = "\n".join(plan[n + 1 :])
            assert "Append" in below and "Limit" in below, text


@pytest.mark.parametrize("name", list(FILTERS))
async def test_each_list_filter_is_an_index_range(engine: AsyncEngine, name: str) -> None:
    filters = FILTERS[name]
    statements = await plans(engine, **filters)
    assert statements
    for plan in statements:
        if name in ("id prefix", "id prefix and status"):
            # At most 1/4096 of the ids: a range of an index on the id, then a sort of those.
            text = "\n".join(plan)
            if engine.dialect.name == "sqlite":
                assert "SCAN files" not in text, text
                assert "USING INDEX sqlite_autoindex_files_1 (id>? AND id<?)" in text, text
            else:  # its statistics choose which (the id's range is an index condition of all)
                assert "Seq Scan" not in text and "Index Cond" in text, text
                assert "(id >= " in text, text
            continue
        assert_index_range(engine.dialect.name, plan)


async def test_the_rewritten_lists_answer_what_the_filters_ask(engine: AsyncEngine) -> None:
    """The same rows as the plain reading of each filter, in the same order."""
    async with create_sessionmaker(engine)() as session:
        everything, _ = await repository.list_owned(session, OWNER, limit=200)
        for name, filters in FILTERS.items():
            got, _ = await repository.list_owned(session, OWNER, limit=200, **filters)
            want = [r for r in everything if _matches(r, filters)]
            assert [r.id for r in got] == [r.id for r in want], name
            page, cursor = await repository.list_owned(session, OWNER, limit=3, **filters)
            assert [r.id for r in page] == [r.id for r in want[:3]], name
            assert (cursor is not None) == (len(want) > 3), name


def _matches(record: FileRecord, filters: dict[str, Any]) -> bool:
    statuses = filters.get("statuses")
    if statuses and record.status not in statuses:
        return False
    kind = filters.get("content_type")
    if kind and kind.endswith("/*") and not record.content_type.startswith(kind[:-1]):
        return False
    if kind and not kind.endswith("/*") and record.content_type != kind:
        return False
    if "created_after" in filters and record.created_at < filters["created_after"]:
        return False
    if "created_before" in filters and record.created_at >= filters["created_before"]:
        return False
    if "cursor" in filters:
        created, ident = repository.decode_cursor(filters["cursor"])
        if (record.created_at, record.id) >= (created, ident):
            return False
    prefix = filters.get("id_prefix")
    return not prefix or record.id.hex.startswith(prefix)


async def test_a_range_of_more_types_than_are_resolved_is_filtered_by_prefix(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``MAX_TYPES`` distinct types the range is not resolved, and no type is lost."""
    monkeypatch.setattr(repository, "MAX_TYPES", 1)
    async with create_sessionmaker(engine)() as session:
        assert await repository.types_in_range(session, OWNER, "video/") is None
        everything, _ = await repository.list_owned(session, OWNER, limit=200)
        filters: dict[str, Any] = {"content_type": "video/*", "statuses": [FileStatus.FAILED]}
        got, _ = await repository.list_owned(session, OWNER, limit=200, **filters)
        want = [r for r in everything if _matches(r, filters)]
        assert want and [r.id for r in got] == [r.id for r in want]
