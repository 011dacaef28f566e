"""One sweep of a registry of a million files, and creates with an ``Idempotency-Key``, at
``--rows`` file rows against an empty registry, before and after a migration, in one run.

For each backend (SQLite always; PostgreSQL with ``--postgres URL``, on whose server two
databases are made and dropped again) an empty and a full registry are migrated to ``--base``
(``0007``), the full one filled by ``registry_scale.fill`` and then shaped as a registry whose
application confirms its files (``CONFIRM_WITHIN_SECONDS`` is set): every readable file is
confirmed but one in 250 (old: the sweep expires them) and those of the last day (young: kept);
``pending`` files older than two weeks are already ``expired`` (earlier sweeps), which leaves a
week of stale ones; every file has an ``Idempotency-Key``. PostgreSQL is then analyzed.

At ``--base``, then again after ``migrate.upgrade`` to the head (its time reported):

* creates (``POST /api/v1/uploads``) on the empty and the full registry, alternating blocks of
  ``--creates`` for ``--rounds`` rounds: without a key, with a fresh key, and the replay of a
  used key; medians (wall, and CPU of this process) and the ratios full / empty;
* one sweep (``confirm_within_seconds`` one day, the clock an hour after the fill's newest file,
  event retention off, a store holding 300 multipart uploads of which 200 under keys of files:
  the orphan part asks the registry about them), through the pool: every hold of the
  connection (checkout to checkin) and every statement timed, the longest of each by part;
* the plan (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN``) of the statements the sweep
  and the creates sent, each with the parameters it was sent with.

Between the two sweeps the first one is undone (files back to the status their event says,
its events and purge jobs deleted), so both sweep the same rows.

    PYTHONPATH=src:bench .venv/bin/python bench/sweep_scale.py [--rows 1000000] \\
        [--postgres postgresql+asyncpg://USER@HOST/DB] [--no-sqlite]

Prints markdown tables per backend on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from registry_scale import (
    BIG_OWNER,
    CREATE_BODY,
    END,
    client,
    drop_postgres,
    fill,
    make_registry,
    percentile,
    postgres_databases,
)
from sqlalchemy import Integer, Table, and_, case, event, func, or_, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncEngine

from bigupload import clock, migrate
from bigupload.config import load_settings
from bigupload.db import create_engine, create_sessionmaker
from bigupload.expiry.sweeper import sweep
from bigupload.files.models import FileRecord
from bigupload.files.status import READABLE
from bigupload.storage.base import MultipartUpload

NOW = END + timedelta(hours=1)
CONFIRM_WITHIN = 24 * 3600
#: One readable file in this many was never confirmed (and is old enough to expire).
UNCONFIRMED_EVERY = 250
STORE_UPLOADS, KNOWN_UPLOADS = 300, 200
KEYSET = re.compile(r"\(files\.created_at, files\.id\) >")
PLAN_LINE = 240
FROM = re.compile(r"\bFROM\b")


@dataclass
class Hold:
    took: float
    statements: list[tuple[str, float]] = field(default_factory=list)


class Recorder:
    """Every checkout of the engine's pool and every statement, while ``on``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.on = False
        self._key = f"bench_began_{id(self)}"
        self.holds: list[Hold] = []
        self.sent: list[tuple[str, Any]] = []
        self._began: dict[int, float] = {}
        self._current: dict[int, Hold] = {}
        sync = engine.sync_engine
        event.listen(sync.pool, "checkout", self._checkout)
        event.listen(sync.pool, "checkin", self._checkin)
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)

    def _checkout(self, dbapi: Any, record: Any, proxy: Any) -> None:
        self._began[id(dbapi)] = time.perf_counter()
        self._current[id(dbapi)] = Hold(0.0)

    def _checkin(self, dbapi: Any, record: Any) -> None:
        began = self._began.pop(id(dbapi), None)
        hold = self._current.pop(id(dbapi), None)
        if self.on and began is not None and hold is not None and hold.statements:
            hold.took = (time.perf_counter() - began) * 1000
            self.holds.append(hold)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        conn.info[self._key] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        took = (time.perf_counter() - conn.info.pop(self._key)) * 1000
        if not self.on:
            return
        hold = self._current.get(id(conn.connection.dbapi_connection))
        if hold is not None:
            hold.statements.append((statement, took))
        self.sent.append((statement, params))


def part(statement: str) -> str:
    """Which part of the sweep (or of a create) sent ``statement``."""
    flat = " ".join(statement.split())
    if flat.startswith("SELECT") and "FROM files" in flat:
        if re.search(r'files\."?key"? IN', flat):
            return "orphan uploads: owners of keys"
        if "confirmed_at IS NULL" in flat:
            return "unconfirmed: select"
        if "idempotency_key" in flat.split("WHERE", 1)[-1]:
            return "create: by Idempotency-Key"
        if "WHERE files.status" in flat:
            return "stale pending: select"
        return "select files"
    if flat.startswith("UPDATE files"):
        return "unconfirmed: update" if "confirmed_at IS NULL" in flat else "stale pending: update"
    if flat.startswith("INSERT INTO file_events"):
        return "expire: insert events"
    if flat.startswith("INSERT INTO jobs") or "FROM jobs" in flat:
        return "purge jobs / retention"
    return flat.split(" ", 1)[0].lower()


class Store:
    """A store that holds multipart uploads and answers nothing else the sweep asks."""

    kind = "local"

    def __init__(self, uploads: list[MultipartUpload]) -> None:
        self.uploads = uploads

    async def list_multipart_uploads(self, prefix: str = "") -> list[MultipartUpload]:
        return list(self.uploads)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        return None


async def shape(engine: AsyncEngine) -> None:
    """Confirm what an application would have, expire what earlier sweeps would have."""
    files = cast(Table, FileRecord.__table__)
    c = files.c
    number = sql_cast(func.substr(c.filename, 6, func.length(c.filename) - 9), Integer)
    readable = c.status.in_(sorted(s.value for s in READABLE))
    unconfirmed = or_(number % UNCONFIRMED_EVERY == 0, c.created_at >= END - timedelta(days=1))
    old_pending = and_(c.status == "pending", c.created_at < END - timedelta(days=14))
    began = time.perf_counter()
    async with engine.begin() as connection:
        await connection.execute(
            update(files).values(
                idempotency_key=c.filename,
                confirmed_at=case((and_(readable, ~unconfirmed), c.updated_at), else_=None),
                status=case((old_pending, "expired"), else_=c.status),
            )
        )
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE"))
    print(f"  shaped in {time.perf_counter() - began:.0f} s", file=sys.stderr)


async def store_uploads(engine: AsyncEngine) -> Store:
    async with engine.connect() as connection:
        keys = (
            await connection.execute(
                select(FileRecord.key).where(FileRecord.status == "expired").limit(KNOWN_UPLOADS)
            )
        ).scalars()
        known = [MultipartUpload(key, uuid.uuid4().hex, END - timedelta(days=30)) for key in keys]
    unknown = [
        MultipartUpload(f"uploads/{BIG_OWNER}/2026/11/{uuid.uuid4()}", uuid.uuid4().hex, NOW)
        for _ in range(STORE_UPLOADS - len(known))
    ]
    return Store(known + unknown)


async def undo_sweep(engine: AsyncEngine) -> None:
    """Put back what the sweep expired, so that the next one sweeps the same rows."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE files SET status = (SELECT e.from_status FROM file_events e"
                " WHERE e.file_id = files.id AND e.to_status = 'expired' AND e.reason = files.error"
                " ORDER BY e.id DESC LIMIT 1), error = NULL, expires_at = NULL"
                " WHERE error LIKE 'not % within %'"
            )
        )
        await connection.execute(text("DELETE FROM file_events WHERE reason LIKE 'not % within %'"))
        await connection.execute(text("DELETE FROM jobs WHERE kind = 'purge'"))
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE files"))


async def explain(engine: AsyncEngine, statement: str, params: Any) -> list[str]:
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
            return [str(row[-1])[:PLAN_LINE] for row in rows]
        rows = await connection.exec_driver_sql(f"EXPLAIN {statement}", params)
        return [str(row[0])[:PLAN_LINE] for row in rows]


async def plans(engine: AsyncEngine, sent: list[tuple[str, Any]]) -> dict[str, list[str]]:
    """The plan of each select part's first statement and of its first after a batch, and of
    the first update of each of the sweep's parts."""
    found: dict[str, list[str]] = {}
    for statement, params in sent:
        name = part(statement)
        if statement.lstrip().startswith("UPDATE"):
            pass
        elif not statement.lstrip().startswith("SELECT") or not FROM.search(statement):
            continue
        label = f"{name} (after a batch)" if KEYSET.search(statement) else name
        if label not in found:
            found[label] = await explain(engine, statement, params)
    return found


async def legacy_unconfirmed(engine: AsyncEngine) -> tuple[float, list[str]]:
    """The sweep's unconfirmed select before the per-status one (``status IN`` the readable
    ones, ordered by ``created_at, id``), its first batch: best of 3 ms, and its plan."""
    cutoff = NOW - timedelta(seconds=CONFIRM_WITHIN)
    query = (
        select(FileRecord)
        .where(
            FileRecord.status.in_([s.value for s in READABLE]),
            FileRecord.confirmed_at.is_(None),
            FileRecord.uploaded_at < cutoff,
        )
        .order_by(FileRecord.created_at, FileRecord.id)
        .limit(100)
    )
    recorder = Recorder(engine)
    best = float("inf")
    for _ in range(3):
        async with engine.connect() as connection:
            recorder.on = True
            began = time.perf_counter()
            await connection.execute(query)
            best = min(best, (time.perf_counter() - began) * 1000)
            recorder.on = False
    statement, params = recorder.sent[0]
    return best, await explain(engine, statement, params)


@dataclass
class SweepFigures:
    report: str
    wall_ms: float
    cpu_ms: float
    holds: int
    by_part: dict[str, tuple[int, float, float, float]]  # statements, max statement, sum, max hold
    longest_hold: float
    median_hold: float
    p95_hold: float
    #: Of the time held, the part spent in statements (the rest: the ORM, commits, the loop).
    in_statements: float
    plans: dict[str, list[str]]
    legacy_ms: float = 0.0


async def measure_sweep(url: str, data: Path) -> SweepFigures:
    engine = create_engine(url)
    legacy_ms, legacy_plan = await legacy_unconfirmed(engine)
    recorder = Recorder(engine)
    store = await store_uploads(engine)
    settings = load_settings(
        data_dir=data,
        database_url=url,
        secret_key="b" * 48,
        public_url="http://bench",
        confirm_within_seconds=CONFIRM_WITHIN,
        event_retention=0,
        log_level="WARNING",
    )
    clock.set_clock(lambda: NOW)
    recorder.on = True
    began, began_cpu = time.perf_counter(), time.process_time()
    try:
        done = await sweep(create_sessionmaker(engine), cast(Any, store), settings)
    finally:
        wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
        recorder.on = False
        clock.set_clock(None)
    by_part: dict[str, list[float]] = defaultdict(list)
    hold_by_part: dict[str, float] = defaultdict(float)
    for hold in recorder.holds:
        for statement, took in hold.statements:
            by_part[part(statement)].append(took)
        named = [st for st, _ in hold.statements if FROM.search(st) or not st.startswith("SELECT")]
        first = part(named[0] if named else hold.statements[0][0])
        hold_by_part[first] = max(hold_by_part[first], hold.took)
    figures = SweepFigures(
        report=done.summary(),
        wall_ms=wall * 1000,
        cpu_ms=cpu * 1000,
        holds=len(recorder.holds),
        by_part={
            name: (len(times), max(times), sum(times), hold_by_part.get(name, 0.0))
            for name, times in by_part.items()
        },
        longest_hold=max((hold.took for hold in recorder.holds), default=0.0),
        median_hold=statistics.median(hold.took for hold in recorder.holds),
        p95_hold=percentile([hold.took for hold in recorder.holds], 0.95),
        in_statements=sum(t for hold in recorder.holds for _, t in hold.statements)
        / max(sum(hold.took for hold in recorder.holds), 1e-9),
        plans={
            **await plans(engine, recorder.sent),
            "unconfirmed before the per-status select (status IN, not run by this sweep)": (
                legacy_plan
            ),
        },
        legacy_ms=legacy_ms,
    )
    await engine.dispose()
    return figures


async def creates(
    empty_url: str, full_url: str, keys: tuple[str, str], work: Path, args: argparse.Namespace
) -> tuple[dict[str, dict[str, tuple[float, float]]], dict[str, list[str]]]:
    """Median (wall, CPU) ms per kind of create on each registry; the full one's plans."""
    empty_app, empty = client(empty_url, work / "empty", keys[0])
    full_app, full = client(full_url, work / "full", keys[1])
    times: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    used: dict[str, list[str]] = {"empty": [], "full": []}
    async with (
        empty_app.router.lifespan_context(empty_app),
        empty,
        full_app.router.lifespan_context(full_app),
        full,
    ):
        for which, http in (("empty", empty), ("full", full)):  # a key to replay, and warm-up
            key = f"bench-{uuid.uuid4()}"
            answer = await http.post(
                "/api/v1/uploads", json=CREATE_BODY, headers={"Idempotency-Key": key}
            )
            assert answer.status_code == 201, answer.text
            used[which].append(key)
        for _ in range(args.rounds):
            for which, http in (("empty", empty), ("full", full)):
                for kind in ("no key", "fresh key", "replay"):
                    for _ in range(args.creates):
                        headers = {}
                        if kind == "fresh key":
                            headers["Idempotency-Key"] = f"bench-{uuid.uuid4()}"
                        elif kind == "replay":
                            headers["Idempotency-Key"] = used[which][0]
                        began, began_cpu = time.perf_counter(), time.process_time()
                        answer = await http.post(
                            "/api/v1/uploads", json=CREATE_BODY, headers=headers
                        )
                        times[(which, kind)].append(
                            (
                                (time.perf_counter() - began) * 1000,
                                (time.process_time() - began_cpu) * 1000,
                            )
                        )
                        assert answer.status_code == 201, answer.text
    medians: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for (which, kind), values in times.items():
        medians[kind][which] = (
            statistics.median(v[0] for v in values),
            statistics.median(v[1] for v in values),
        )
    engine = create_engine(full_url)
    recorder = Recorder(engine)
    recorder.on = True
    async with create_sessionmaker(engine)() as session:
        from bigupload.files import repository

        await repository.by_idempotency_key(session, BIG_OWNER, used["full"][0])
        await repository.by_idempotency_key(session, BIG_OWNER, f"bench-{uuid.uuid4()}")
    recorder.on = False
    found: dict[str, list[str]] = {}
    for (statement, params), label in zip(recorder.sent, ("used key", "fresh key"), strict=False):
        found[f"create: by Idempotency-Key ({label})"] = await explain(engine, statement, params)
    await engine.dispose()
    return dict(medians), found


@dataclass
class Phase:
    revision: str
    upgrade_s: float
    sweep: SweepFigures
    creates: dict[str, dict[str, tuple[float, float]]]
    create_plans: dict[str, list[str]]


async def phase(
    revision: str,
    upgrade_s: float,
    empty_url: str,
    full_url: str,
    keys: tuple[str, str],
    work: Path,
    args: argparse.Namespace,
) -> Phase:
    print(f"  at {revision}: creates", file=sys.stderr)
    medians, create_plans = await creates(empty_url, full_url, keys, work / revision, args)
    print(f"  at {revision}: sweep", file=sys.stderr)
    figures = await measure_sweep(full_url, work / revision / "sweep")
    print(f"  at {revision}: {figures.report} in {figures.wall_ms:.0f} ms", file=sys.stderr)
    return Phase(revision, upgrade_s, figures, medians, create_plans)


async def measure(
    name: str, empty_url: str, full_url: str, args: argparse.Namespace
) -> list[Phase]:
    work = Path(tempfile.mkdtemp(prefix="sweep-scale-"))
    print(f"{name}: work in {work}", file=sys.stderr)
    empty_key = (await make_registry(empty_url, [BIG_OWNER], args.base))[BIG_OWNER]
    full_key = (await make_registry(full_url, [BIG_OWNER], args.base))[BIG_OWNER]
    keys = (empty_key, full_key)
    engine = create_engine(full_url)
    await fill(engine, args.rows)
    await shape(engine)
    await engine.dispose()
    phases = [await phase(args.base, 0.0, empty_url, full_url, keys, work, args)]
    engine = create_engine(full_url)
    await undo_sweep(engine)
    began = time.perf_counter()
    await migrate.upgrade(engine)
    upgrade_s = time.perf_counter() - began
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("ANALYZE files"))
    await engine.dispose()
    empty_engine = create_engine(empty_url)
    await migrate.upgrade(empty_engine)
    await empty_engine.dispose()
    head = migrate.head_revision() or "head"
    phases.append(await phase(head, upgrade_s, empty_url, full_url, keys, work, args))
    shutil.rmtree(work, ignore_errors=True)
    return phases


def row(label: str, cells: list[str]) -> None:
    print(f"| {label} | " + " | ".join(cells) + " |")


def report(name: str, rows: int, phases: list[Phase]) -> None:
    print(f"\n## {name}, {rows:,} file rows\n")
    row("sweep", [p.revision for p in phases])
    print("| --- |" + " ---: |" * len(phases))
    sweeps = [p.sweep for p in phases]
    row("what it did", [s.report for s in sweeps])
    row("wall / CPU ms", [f"{s.wall_ms:.0f} / {s.cpu_ms:.0f}" for s in sweeps])
    row("holds of the connection", [str(s.holds) for s in sweeps])
    row(
        "hold ms: median / p95 / longest",
        [f"{s.median_hold:.1f} / {s.p95_hold:.1f} / {s.longest_hold:.1f}" for s in sweeps],
    )
    row("of the time held, in statements", [f"{s.in_statements:.0%}" for s in sweeps])
    row(
        "unconfirmed select before the per-status one, first batch, best of 3 ms",
        [f"{s.legacy_ms:.1f}" for s in sweeps],
    )
    for label in sorted({n for s in sweeps for n in s.by_part}):
        cells = []
        for s in sweeps:
            count, longest, total, hold = s.by_part.get(label, (0, 0.0, 0.0, 0.0))
            cells.append(f"{count} stmts, max {longest:.1f}, sum {total:.0f}, hold {hold:.1f}")
        row(label, cells)
    row("upgrade of the full registry, s", [f"{p.upgrade_s:.1f}" for p in phases])
    print()
    row(
        "create (median wall / CPU ms)",
        [f"{p.revision} {what}" for p in phases for what in ("empty", "full", "ratio")],
    )
    print("| --- |" + " ---: | ---: | ---: |" * len(phases))
    for kind in ("no key", "fresh key", "replay"):
        cells = []
        for p in phases:
            (ew, ec), (fw, fc) = p.creates[kind]["empty"], p.creates[kind]["full"]
            cells += [
                f"{ew:.2f} / {ec:.2f}",
                f"{fw:.2f} / {fc:.2f}",
                f"{fw / ew:.2f} / {fc / ec:.2f}",
            ]
        row(kind, cells)
    for p in phases:
        print(f"\nPlans at {p.revision}:\n")
        for label, lines in {**p.sweep.plans, **p.create_plans}.items():
            print(f"* {label}:\n  ```")
            for line in lines:
                print(f"  {line}")
            print("  ```")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--base", default="0007", help="the revision measured before the head")
    parser.add_argument("--creates", type=int, default=30, help="creates per block")
    parser.add_argument("--rounds", type=int, default=4, help="blocks per registry")
    parser.add_argument("--postgres", metavar="URL", help="also on this PostgreSQL server")
    parser.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    args = parser.parse_args()
    if not args.no_sqlite:
        work = Path(tempfile.mkdtemp(prefix="sweep-scale-db-"))
        phases = await measure(
            "SQLite",
            f"sqlite+aiosqlite:///{work / 'empty.db'}",
            f"sqlite+aiosqlite:///{work / 'full.db'}",
            args,
        )
        shutil.rmtree(work, ignore_errors=True)
        report("SQLite", args.rows, phases)
    if args.postgres:
        empty_url, full_url, admin = await postgres_databases(args.postgres)
        try:
            phases = await measure("PostgreSQL", empty_url, full_url, args)
        finally:
            await drop_postgres(admin, empty_url, full_url)
        report("PostgreSQL", args.rows, phases)


if __name__ == "__main__":
    asyncio.run(main())
