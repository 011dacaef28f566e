"""A registry of a million files: the first page of every list filter, and the cost of a create,
at ``--rows`` file rows against an empty registry, in one run.

For each backend (SQLite always; PostgreSQL with ``--postgres URL``, on whose server the bench
creates, and afterwards drops, two databases of its own) it migrates an empty registry and a
full one, fills the full one with ``--rows`` files and as many status events (Core inserts of
50,000 rows per transaction; the spread: ten owners of which one holds 70 % of the rows, every
status, eight content types, creation dates over a year; PostgreSQL is then analyzed, as
autovacuum would, SQLite not, as bigupload never does), then, through the real app (httpx's ASGI
transport, the job runner off):

* asks ``GET /api/v1/files`` with every filter for the big owner's first page, ``--samples``
  times each, and reports the median and p95 latency, and the median CPU time of this process
  (the app and, on SQLite, the registry too: the figure that moves least with the machine's
  load; on PostgreSQL the server's own work is not in it); ``processing`` is a status the big owner
  has no file in, ``font/*`` a range it has no file in (what used to scan);
* times ``POST /api/v1/uploads`` on the empty and the full registry, alternating blocks of
  ``--creates`` requests for ``--rounds`` rounds, and reports the medians (wall and CPU) and
  their ratios.

    PYTHONPATH=src .venv/bin/python bench/registry_scale.py                 # SQLite, 1M rows
    PYTHONPATH=src .venv/bin/python bench/registry_scale.py --rows 100000 --postgres \\
        postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

Prints a markdown table per backend on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import httpx
from sqlalchemy import Table, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bigupload import migrate
from bigupload.app import create_app
from bigupload.auth import repository as keys
from bigupload.config import load_settings
from bigupload.db import create_engine, create_sessionmaker
from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.repository import encode_cursor

CHUNK = 50_000
BIG_OWNER = "owner-00"
OWNERS = [f"owner-{n:02d}" for n in range(10)]
#: status -> weight; the big owner never has a ``processing`` file (a status with no match).
STATUSES = {
    "completed": 60,
    "uploaded": 8,
    "pending": 10,
    "processing": 1,
    "failed": 6,
    "expired": 12,
    "aborted": 3,
}
TYPES = {
    "video/mp4": 30,
    "video/webm": 5,
    "video/quicktime": 5,
    "image/png": 15,
    "image/jpeg": 20,
    "application/pdf": 15,
    "application/zip": 5,
    "text/plain": 5,
}
YEAR = timedelta(days=365)
END = datetime(2026, 12, 1, tzinfo=UTC)
START = END - YEAR
CREATE_BODY = {"filename": "big.iso", "content_type": "application/octet-stream", "size": 5 << 30}


@dataclass
class Spread:
    """What the fill produced that the queries need: one of the big owner's files per decile."""

    marks: list[tuple[datetime, uuid.UUID]]


def rows(count: int, seed: int = 12) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``count`` files (oldest first) and their last status event."""
    rng = random.Random(seed)
    statuses, status_weights = list(STATUSES), list(STATUSES.values())
    types, type_weights = list(TYPES), list(TYPES.values())
    step = YEAR / max(count, 1)
    for n in range(count):
        owner = BIG_OWNER if rng.random() < 0.7 else rng.choice(OWNERS[1:])
        status = rng.choices(statuses, status_weights)[0]
        if owner == BIG_OWNER and status == "processing":
            status = "completed"
        created = START + step * n + timedelta(microseconds=rng.randrange(1000))
        done = status not in ("pending", "aborted", "expired")
        file_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        size = rng.randrange(1 << 10, 1 << 32)
        file_row = {
            "id": file_id,
            "owner": owner,
            "bucket": "bench",
            "key": f"uploads/{owner}/{created:%Y/%m}/{file_id}",
            "filename": f"file-{n}.bin",
            "content_type": rng.choices(types, type_weights)[0],
            "detected_content_type": None,
            "size": size,
            "stored_size": size if done else None,
            "checksum_sha256": None,
            "etag": None,
            "status": status,
            "multipart_upload_id": None,
            "part_size": None,
            "part_checksums": False,
            "metadata": {},
            "error": "bench" if status == "failed" else None,
            "created_at": created,
            "updated_at": created + timedelta(minutes=5),
            "uploaded_at": created + timedelta(minutes=4) if done else None,
            "completed_at": created + timedelta(minutes=5) if status == "completed" else None,
            "expires_at": None,
            "confirmed_at": None,
            "results": {},
            "idempotency_key": None,
        }
        event_row = {
            "file_id": file_id,
            "owner": owner,
            "from_status": None,
            "to_status": status,
            "reason": None,
            "created_at": created,
            "dispatched": True,
        }
        yield file_row, event_row


async def fill(engine: AsyncEngine, count: int) -> Spread:
    files = cast(Table, FileRecord.__table__)
    events = cast(Table, FileEvent.__table__)
    # Only the columns this schema has (the bench also runs on older checkouts).
    file_columns = set(files.c.keys())
    marks: list[tuple[datetime, uuid.UUID]] = []
    big_seen = 0
    started = time.perf_counter()
    batch: list[tuple[dict[str, Any], dict[str, Any]]] = []
    filled = 0

    async def flush() -> None:
        async with engine.begin() as connection:
            await connection.execute(
                insert(files), [{k: v for k, v in f.items() if k in file_columns} for f, _ in batch]
            )
            await connection.execute(insert(events), [e for _, e in batch])
        batch.clear()

    for file_row, event_row in rows(count):
        if file_row["owner"] == BIG_OWNER:
            big_seen += 1
            if big_seen % max(1, int(count * 0.7) // 10) == 0:
                marks.append((file_row["created_at"], file_row["id"]))
        batch.append((file_row, event_row))
        if len(batch) == CHUNK:
            await flush()
            filled += CHUNK
            took = time.perf_counter() - started
            print(f"  filled {filled:,} rows ({took:.0f} s)", file=sys.stderr)
    if batch:
        await flush()
    if engine.dialect.name == "postgresql":  # as autovacuum would; SQLite is never analyzed
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
    print(f"  filled {count} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return Spread(marks)


class Mark:
    """A stand-in record for :func:`encode_cursor`: a page that ends at a given file."""

    def __init__(self, created_at: datetime, ident: uuid.UUID) -> None:
        self.created_at = created_at
        self.id = ident


def filters(spread: Spread) -> list[tuple[str, dict[str, Any]]]:
    mid = spread.marks[len(spread.marks) // 2] if spread.marks else (END - YEAR / 2, uuid.uuid4())
    deep = encode_cursor(cast(Any, Mark(*mid)))
    month_after = (START + YEAR / 2).isoformat()
    month_before = (START + YEAR / 2 + timedelta(days=30)).isoformat()
    prefix4 = mid[1].hex[:4]
    return [
        ("owner only", {}),
        ("status=completed", {"status": "completed"}),
        ("status=processing (none)", {"status": "processing"}),
        ("status=failed+expired", {"status": ["failed", "expired"]}),
        ("type=video/mp4", {"content_type": "video/mp4"}),
        ("type=video/*", {"content_type": "video/*"}),
        ("type=font/* (none)", {"content_type": "font/*"}),
        ("type=text/x-none (none)", {"content_type": "text/x-none"}),
        ("created in a month", {"created_after": month_after, "created_before": month_before}),
        ("created_after (last week)", {"created_after": (END - timedelta(days=7)).isoformat()}),
        ("status+type", {"status": "failed", "content_type": "image/png"}),
        ("status+type (none)", {"status": "processing", "content_type": "video/mp4"}),
        ("status+range type", {"status": "completed", "content_type": "image/*"}),
        (
            "status+type+month",
            {
                "status": "completed",
                "content_type": "video/mp4",
                "created_after": month_after,
                "created_before": month_before,
            },
        ),
        ("deep cursor", {"cursor": deep}),
        ("deep cursor+status", {"cursor": deep, "status": "failed"}),
        ("deep cursor+type", {"cursor": deep, "content_type": "application/pdf"}),
        ("id_prefix (4 digits)", {"id_prefix": prefix4}),
        ("id_prefix (1 digit)", {"id_prefix": prefix4[:1]}),
        ("id_prefix+status", {"id_prefix": prefix4[:2], "status": "completed"}),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def make_registry(url: str, owners: list[str], revision: str = "head") -> dict[str, str]:
    engine = create_engine(url)
    await migrate.upgrade(engine, revision)
    found = {}
    async with create_sessionmaker(engine)() as session, session.begin():
        for owner in owners:
            _, key = await keys.create(session, owner, owner)
            found[owner] = key
    await engine.dispose()
    return found


def client(url: str, data: Path, api_key: str) -> tuple[Any, httpx.AsyncClient]:
    settings = load_settings(
        data_dir=data,
        database_url=url,
        secret_key="b" * 48,
        public_url="http://bench",
        rate_limit="off",
        run_jobs=False,
        local_storage_events=False,
        log_level="WARNING",
    )
    app = create_app(settings)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bench",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    return app, http


async def measure(
    name: str, empty_url: str, full_url: str, args: argparse.Namespace
) -> list[tuple[str, str, str]]:
    work = Path(tempfile.mkdtemp(prefix="registry-scale-"))
    print(f"{name}: registries in {work}", file=sys.stderr)
    empty_keys = await make_registry(empty_url, [BIG_OWNER])
    full_keys = await make_registry(full_url, [BIG_OWNER])
    engine = create_engine(full_url)
    spread = await fill(engine, args.rows)
    await engine.dispose()

    empty_app, empty = client(empty_url, work / "empty", empty_keys[BIG_OWNER])
    full_app, full = client(full_url, work / "full", full_keys[BIG_OWNER])
    table: list[tuple[str, str, str]] = []
    async with (
        empty_app.router.lifespan_context(empty_app),
        empty,
        full_app.router.lifespan_context(full_app),
        full,
    ):
        await full.get("/api/v1/files")  # the app's own first-request costs, not a filter's
        for label, params in filters(spread):
            query = urlencode(params, doseq=True)
            times, cpu = [], []
            answered = 0
            for _ in range(args.samples):
                began, began_cpu = time.perf_counter(), time.process_time()
                answer = await full.get(f"/api/v1/files?{query}")
                times.append((time.perf_counter() - began) * 1000)
                cpu.append((time.process_time() - began_cpu) * 1000)
                assert answer.status_code == 200, answer.text
                answered = len(answer.json()["items"])
            row = (
                f"{statistics.median(times):.1f} / {percentile(times, 0.95):.1f}"
                f" | {statistics.median(cpu):.1f}"
            )
            table.append((label, row, str(answered)))
            print(f"  {label}: {row} ms ({answered} files)", file=sys.stderr)

        per: dict[str, list[float]] = {"empty": [], "full": []}
        cpu_per: dict[str, list[float]] = {"empty": [], "full": []}
        for _ in range(args.rounds):
            for which, http in (("empty", empty), ("full", full)):
                for _ in range(args.creates):
                    began, began_cpu = time.perf_counter(), time.process_time()
                    answer = await http.post("/api/v1/uploads", json=CREATE_BODY)
                    per[which].append((time.perf_counter() - began) * 1000)
                    cpu_per[which].append((time.process_time() - began_cpu) * 1000)
                    assert answer.status_code == 201, answer.text
        empty_ms, full_ms = statistics.median(per["empty"]), statistics.median(per["full"])
        empty_cpu, full_cpu = (
            statistics.median(cpu_per["empty"]),
            statistics.median(cpu_per["full"]),
        )
        table.append(("create, empty registry", f"{empty_ms:.2f} | {empty_cpu:.2f}", ""))
        table.append((f"create, {args.rows:,} rows", f"{full_ms:.2f} | {full_cpu:.2f}", ""))
        table.append(
            (
                "create ratio full/empty",
                f"{full_ms / empty_ms:.2f} | {full_cpu / empty_cpu:.2f}",
                "",
            )
        )
    return table


async def postgres_databases(url: str) -> tuple[str, str, AsyncEngine]:
    admin = create_engine(url)
    suffix = uuid.uuid4().hex[:8]
    names = (f"bench_empty_{suffix}", f"bench_full_{suffix}")
    async with admin.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for db in names:
            await connection.execute(text(f"CREATE DATABASE {db}"))
    base = make_url(url)
    return (
        base.set(database=names[0]).render_as_string(hide_password=False),
        base.set(database=names[1]).render_as_string(hide_password=False),
        admin,
    )


async def drop_postgres(admin: AsyncEngine, *urls: str) -> None:
    async with admin.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for url in urls:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {make_url(url).database}"))
    await admin.dispose()


def report(name: str, rows_count: int, table: list[tuple[str, str, str]]) -> None:
    print(f"\n{name}, {rows_count:,} file rows (first page of 50)\n")
    print("| query | wall ms, median / p95 | CPU ms, median | files |")
    print("| --- | ---: | ---: | ---: |")
    for label, value, answered in table:
        print(f"| {label} | {value} | {answered} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=20, help="requests per filter")
    parser.add_argument("--creates", type=int, default=50, help="creates per block")
    parser.add_argument("--rounds", type=int, default=6, help="blocks per registry")
    parser.add_argument("--postgres", metavar="URL", help="also on this PostgreSQL server")
    parser.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    args = parser.parse_args()
    if not args.no_sqlite:
        work = Path(tempfile.mkdtemp(prefix="registry-scale-db-"))
        table = await measure(
            "SQLite",
            f"sqlite+aiosqlite:///{work / 'empty.db'}",
            f"sqlite+aiosqlite:///{work / 'full.db'}",
            args,
        )
        shutil.rmtree(work, ignore_errors=True)
        report("SQLite", args.rows, table)
    if args.postgres:
        empty_url, full_url, admin = await postgres_databases(args.postgres)
        try:
            table = await measure("PostgreSQL", empty_url, full_url, args)
        finally:
            await drop_postgres(admin, empty_url, full_url)
        report("PostgreSQL", args.rows, table)


if __name__ == "__main__":
    asyncio.run(main())
