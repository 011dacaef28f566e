"""The registry's own work for each list filter on PostgreSQL, free of the machine's load.

Fills a (migrated, empty) database with ``ROWS`` files by one ``generate_series`` insert (about
the spread of ``registry_scale.py``: one owner with 70 % of the rows and no ``processing`` file),
analyzes it, then runs ``EXPLAIN (ANALYZE, BUFFERS)`` on the statements
``repository.list_owned`` sends for each filter (caught as they are executed): the best of 3
execution times, summed over the statements, and the shared buffers they touched.

    PYTHONPATH=src .venv/bin/python bench/registry_explain.py postgresql+asyncpg://U@H/DB 1000000
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text

from bigupload import migrate
from bigupload.db import create_engine, create_sessionmaker
from bigupload.files import repository
from bigupload.files.status import FileStatus as S


def _weighted(values: dict[str, int]) -> str:
    return "ARRAY[" + ",".join(f"'{v}'" for v, n in values.items() for _ in range(n)) + "]"


TYPES = _weighted(
    {
        "video/mp4": 6,
        "video/webm": 1,
        "video/quicktime": 1,
        "image/png": 3,
        "image/jpeg": 4,
        "application/pdf": 3,
        "application/zip": 1,
        "text/plain": 1,
    }
)
STATUSES = _weighted(
    {"completed": 12, "uploaded": 2, "pending": 2, "failed": 1, "expired": 2, "aborted": 1}
)
FILL = """
INSERT INTO files (id, owner, bucket, key, filename, content_type, size, status, part_checksums,
                   metadata, created_at, updated_at, results)
SELECT id, owner, 'b', 'uploads/' || id, 'f.bin', kind, 1, st, false, '{{}}', ts, ts, '{{}}'
FROM (SELECT gen_random_uuid() AS id,
             CASE WHEN random() < 0.7 THEN 'owner-00'
                  ELSE 'owner-0' || (1 + floor(random() * 9))::int END AS owner,
             ({types})[1 + floor(random() * 20)::int] AS kind,
             ({statuses})[1 + floor(random() * 20)::int] AS st,
             timestamptz '2025-12-01' + ((g * 31536.0 / {rows}) * interval '1000 seconds') AS ts
      FROM generate_series(1, {rows}) g) s
"""
MID = datetime(2026, 6, 1, tzinfo=UTC)
CASES: dict[str, dict[str, Any]] = {
    "owner only": {},
    "status=completed": {"statuses": [S.COMPLETED]},
    "status=processing (none)": {"statuses": [S.PROCESSING]},
    "status=failed+expired": {"statuses": [S.FAILED, S.EXPIRED]},
    "type=video/mp4": {"content_type": "video/mp4"},
    "type=video/*": {"content_type": "video/*"},
    "type=font/* (none)": {"content_type": "font/*"},
    "type=text/x-none (none)": {"content_type": "text/x-none"},
    "created in a month": {"created_after": MID, "created_before": MID + timedelta(days=30)},
    "status+type": {"statuses": [S.FAILED], "content_type": "image/png"},
    "status+type (none)": {"statuses": [S.PROCESSING], "content_type": "video/mp4"},
    "status+range type": {"statuses": [S.COMPLETED], "content_type": "image/*"},
    "deep cursor": {"cursor": None},
    "deep cursor+status": {"cursor": None, "statuses": [S.FAILED]},
    "id_prefix (4 digits)": {"id_prefix": "abcd"},
    "id_prefix (1 digit)": {"id_prefix": "a"},
}
MIDDLE = (
    "SELECT created_at, id FROM files WHERE owner = 'owner-00' AND created_at < :m"
    " ORDER BY created_at DESC LIMIT 1"
)


class Mark:
    def __init__(self, created_at: datetime, ident: Any) -> None:
        self.created_at, self.id = created_at, ident


async def main() -> None:
    url, rows = sys.argv[1], int(sys.argv[2])
    engine = create_engine(url)
    await migrate.upgrade(engine)
    async with engine.begin() as connection:
        await connection.execute(text(FILL.format(types=TYPES, statuses=STATUSES, rows=rows)))
        await connection.execute(text("ANALYZE files"))
        middle = (await connection.execute(text(MIDDLE), {"m": MID})).one()
    cursor = repository.encode_cursor(Mark(middle[0], middle[1]))  # type: ignore[arg-type]
    sent: list[tuple[str, Any]] = []

    def catch(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append((statement, params))

    event.listen(engine.sync_engine, "before_cursor_execute", catch)
    sessions = create_sessionmaker(engine)
    print("| query | server ms | buffers |")
    print("| --- | ---: | ---: |")
    for name, filters in CASES.items():
        if "cursor" in filters:
            filters = {**filters, "cursor": cursor}
        best: tuple[float, int] | None = None
        for _ in range(3):
            sent.clear()
            async with sessions() as session:
                await repository.list_owned(session, "owner-00", limit=50, **filters)
            statements = list(sent)
            took, buffers = 0.0, 0
            async with engine.connect() as connection:
                for statement, params in statements:
                    plan = await connection.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, params
                    )
                    out = "\n".join(str(row[0]) for row in plan)
                    found = re.search(r"Execution Time: ([\d.]+)", out)
                    took += float(found.group(1)) if found else 0.0
                    hits = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", out)
                    buffers += int(hits.group(1)) + int(hits.group(2) or 0) if hits else 0
            if best is None or took < best[0]:
                best = (took, buffers)
        assert best is not None
        print(f"| {name} | {best[0]:.2f} | {best[1]} |", flush=True)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
