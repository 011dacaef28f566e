"""A claim reads only due jobs: on SQLite its queries are ranges of ``ix_jobs_due``, never a scan
of the jobs table (which holds every finished job until retention deletes it).

The query plan is asked of SQLite itself (``EXPLAIN QUERY PLAN``), for the very statements a
claim ran; nothing is timed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bigupload.jobs import repository
from tests.jobs.conftest import Registry
from tests.support.statements import statements_of

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
async def test_a_claim_searches_the_due_index_and_scans_nothing(registry: Registry) -> None:
    await registry.enqueue("noop", ordering_key="a")
    await registry.enqueue("noop", ordering_key="a")
    with statements_of(registry.engine) as seen:
        async with registry.sessionmaker() as session, session.begin():
            claimed = await repository.claim_due(
                session, kinds=["noop"], worker_id="w", limit=4, lease_seconds=60
            )
    assert len(claimed) == 1  # the second waits for the first (same ordering key)
    selects = [(sql, params) for sql, params in seen.executed if sql.startswith("SELECT")]
    assert selects
    path = Path(registry.url.removeprefix("sqlite+aiosqlite:///"))
    with sqlite3.connect(path) as db:
        for sql, params in selects:
            plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
            assert any("USING INDEX ix_jobs_due" in step for step in plan), plan
            assert not any(step.startswith("SCAN") for step in plan), plan
            assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort either
