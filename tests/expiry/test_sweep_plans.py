"""The sweeper's reads of ``files`` are index ranges read in order, on SQLite and PostgreSQL: its
stale ``pending`` files a range of ``ix_files_status_created``, its never confirmed ones a range
of ``ix_files_unconfirmed`` per status, so that confirmed files, however many, are never read;
and each batch's update finds its files by their ids (the primary key), not by their status.

A structural check, as ``tests/test_list_plans.py`` (whose check of a plan this reuses): the
statements one sweep sends, batches of a few files so that the later batches' row-value start is
among them, caught as they are executed, then explained with the same parameters.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bigupload import migrate
from bigupload.db import create_engine, create_sessionmaker
from bigupload.expiry import sweeper
from bigupload.files.models import FileRecord
from bigupload.files.status import FileStatus
from bigupload.storage.local import LocalStorage
from tests.conftest import make_settings
from tests.test_list_plans import assert_index_range

START = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = [
    FileStatus.PENDING,
    FileStatus.UPLOADED,
    FileStatus.PROCESSING,
    FileStatus.COMPLETED,
    FileStatus.EXPIRED,
    FileStatus.FAILED,
]
KEYSET = re.compile(r"\(files\.created_at, files\.id\) >")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    rows = []
    for n in range(240):
        status = STATUSES[n % len(STATUSES)]
        created = START + timedelta(hours=n)
        uploaded = created + timedelta(minutes=1) if status != FileStatus.PENDING else None
        rows.append(
            {
                "id": uuid.UUID(int=n + 1),
                "owner": "alice",
                "bucket": "b",
                "key": f"uploads/{n}",
                "filename": f"{n}.bin",
                "content_type": "video/mp4",
                "size": n,
                "status": status.value,
                "metadata": {},
                "results": {},
                "created_at": created,
                "updated_at": created,
                "uploaded_at": uploaded,
                # Half the whole files were confirmed.
                "confirmed_at": uploaded if uploaded is not None and (n // 6) % 2 else None,
            }
        )
    async with engine.begin() as connection:
        await connection.execute(insert(FileRecord.__table__), rows)  # type: ignore[arg-type]
    yield engine
    await engine.dispose()


async def test_the_sweeps_reads_of_files_are_index_ranges(
    engine: AsyncEngine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper, "BATCH", 4)
    sent: list[tuple[str, Any]] = []

    def catch(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        flat = " ".join(statement.split())
        if (flat.startswith("SELECT") and "FROM files" in flat) or flat.startswith("UPDATE files"):
            sent.append((statement, params))

    settings = make_settings(
        tmp_path, database_url, pending_expiry_seconds=3600, confirm_within_seconds=600
    )
    storage = LocalStorage(tmp_path / "store", public_url="http://t", secret="s" * 40)
    event.listen(engine.sync_engine, "before_cursor_execute", catch)
    try:
        report = await sweeper.sweep(create_sessionmaker(engine), storage, settings)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", catch)
    assert (report.expired_pending, report.expired_unconfirmed) == (40, 60)

    postgres = engine.dialect.name == "postgresql"
    updates = [s for s in sent if s[0].startswith("UPDATE")]
    unconfirmed = [s for s in sent if s not in updates and "confirmed_at IS NULL" in s[0]]
    pending = [s for s in sent if s not in updates and s not in unconfirmed]
    assert any(KEYSET.search(s) for s, _ in unconfirmed), unconfirmed
    assert any(KEYSET.search(s) for s, _ in pending), pending
    async with engine.connect() as connection:
        if postgres:
            await connection.exec_driver_sql("SET enable_seqscan = off")
            await connection.exec_driver_sql("SET enable_sort = off")
        explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
        for statements, index in (
            (unconfirmed, "ix_files_unconfirmed"),
            (pending, "ix_files_status_created"),
        ):
            for statement, params in statements:
                result = await connection.exec_driver_sql(explain + statement, params)
                plan = [str(row[-1]).strip() for row in result]
                assert_index_range(engine.dialect.name, plan)
                assert index in "\n".join(plan), plan
        # A batch's update finds its files by their ids, never by their status.
        assert updates
        for statement, params in updates:
            result = await connection.exec_driver_sql(explain + statement, params)
            plan = "\n".join(str(row[-1]).strip() for row in result)
            assert ("(id = ANY" if postgres else "(id=?)") in plan, plan
