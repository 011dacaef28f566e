"""How long the background work (outbox dispatch, job runner, sweep) holds the registry's one
SQLite connection at a time, with a realistic backlog, and what it costs requests meanwhile.

Each tree (``--tree DIR``, a checkout whose ``src/`` goes first on ``PYTHONPATH``; ``--base REV``
adds this repository's revision ``REV`` as the first tree, exported with ``git archive`` to a
temporary directory) runs the same workload in a child process:

* a fresh SQLite registry (the tree's own migrations; on ``/dev/shm`` where there is one, so that
  fsync stalls of a shared disk are not measured), filled with sqlite3 directly: 10,000 files
  (2,000 of them ``pending`` for 8 days: the sweep expires them), 100,000 dispatched file events
  40 days old (of files deleted since), 10,000 undispatched ones, 100,000 webhook jobs
  finished 10 days ago and 10,000 due jobs of a no-op kind;
* then, one phase at a time: ``dispatch`` (no sink configured, the default: the dispatcher is
  run until no event is left undispatched), ``dispatch-webhook`` (the same 10,000 events again,
  with one webhook endpoint configured: jobs are queued, not sent), ``jobs`` (a runner with the
  default concurrency claims and runs 2,000 no-op jobs), ``sweep`` (one sweep: expiry and, where
  the tree has it, retention);
* during every phase (and an ``idle`` one first) 8 "requests" run concurrently, each a loop of
  one small INSERT transaction on the same engine, as a create does.

Measured: every time the connection is checked out of the pool until it is checked in (SQLAlchemy
pool events), the background's apart from the requests'; per phase the number of holds, their max
and p99, the time held in all, the phase's wall time, and the requests' latency (p50, p99, max).

    .venv/bin/python bench/background_holds.py --base 7fb6aaf --tree .

Prints a markdown table on stdout, progress on stderr; JSON to ``bench/results/
background_holds.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from revisions import export

HERE = Path(__file__).resolve().parent

WORKLOAD = r"""
import asyncio, json, sqlite3, statistics, sys, tempfile, time, uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, text

from bigupload import migrate
from bigupload.config import load_settings
from bigupload.db import create_engine, create_sessionmaker
from bigupload.expiry.sweeper import sweep
from bigupload.jobs.kinds import JobKind, PeriodicContext
from bigupload.jobs.runner import JobRunner
from bigupload.notifications.dispatch import DISPATCH
from bigupload.storage.local import LocalStorage

FILES, PENDING, OLD_EVENTS, NEW_EVENTS, FINISHED_JOBS, DUE_JOBS = (int(a) for a in sys.argv[1:7])
RUN_JOBS = int(sys.argv[7])
PROBES = 8
DOCUMENT = json.dumps({"type": "file.completed", "data": {"file": {"filename": "x" * 200}}})


def stamp(moment):
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def seed(path, now):
    db = sqlite3.connect(path)
    files = [uuid.uuid4() for _ in range(FILES)]
    created = lambda n: stamp(now - timedelta(days=8 if n < PENDING else 0, seconds=FILES - n))
    db.executemany(
        "INSERT INTO files (id, owner, bucket, key, filename, content_type, size, status,"
        " part_checksums, metadata, results, created_at, updated_at)"
        " VALUES (?, 'bench', 'local', ?, 'f.bin', 'application/octet-stream', 10, ?, 0, '{}',"
        " '{}', ?, ?)",
        [
            (f.hex, f"uploads/bench/2026/01/{f}", "pending" if n < PENDING else "uploaded",
             created(n), created(n))
            for n, f in enumerate(files)
        ],
    )
    old = now - timedelta(days=40)
    db.executemany(
        "INSERT INTO file_events (file_id, owner, from_status, to_status, created_at, dispatched)"
        " VALUES (?, 'bench', 'pending', 'uploaded', ?, 1)",
        # of files deleted long ago (events outlive their files)
        [(uuid.uuid4().hex, stamp(old + timedelta(seconds=n))) for n in range(OLD_EVENTS)],
    )
    db.executemany(
        "INSERT INTO file_events (file_id, owner, from_status, to_status, created_at, dispatched)"
        " VALUES (?, 'bench', 'pending', 'uploaded', ?, 0)",
        [(files[n % FILES].hex, stamp(now - timedelta(seconds=NEW_EVENTS - n)))
         for n in range(NEW_EVENTS)],
    )
    done_at = stamp(now - timedelta(days=10))
    db.executemany(
        "INSERT INTO jobs (kind, payload, file_id, owner, dedupe_key, ordering_key, status,"
        " attempts, max_attempts, run_at, created_at, updated_at, finished_at, result)"
        " VALUES ('webhook', ?, ?, 'bench', ?, ?, 'done', 1, 10, ?, ?, ?, ?,"
        " '{\"status_code\": 200}')",
        [(DOCUMENT, files[n % FILES].hex, f"webhook:old:{n}", f"webhook:old:{files[n % FILES]}",
          done_at, done_at, done_at, done_at) for n in range(FINISHED_JOBS)],
    )
    due = stamp(now - timedelta(minutes=1))
    db.executemany(
        "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_at, created_at,"
        " updated_at) VALUES ('noop', '{}', 'queued', 0, 5, ?, ?, ?)",
        [(due, due, due) for _ in range(DUE_JOBS)],
    )
    db.execute("CREATE TABLE bench_probe (at FLOAT NOT NULL)")
    db.commit()
    db.execute("ANALYZE")
    db.close()


class Holds:
    def __init__(self, engine):
        self.phase = None
        self.records = []  # (phase, seconds, probe?)
        self._start = None
        self._probe = False
        self._statements = []
        self.worst = {}  # phase -> (seconds, statements of that hold)
        sync = engine.sync_engine
        event.listen(sync, "checkout", self._checkout)
        event.listen(sync, "checkin", self._checkin)
        event.listen(sync, "before_cursor_execute", self._statement)

    def _checkout(self, *_):
        self._start, self._probe, self._statements = time.perf_counter(), False, []

    def _statement(self, _conn, _cursor, statement, parameters, _context, many):
        if "bench_probe" in statement:
            self._probe = True
        rows = len(parameters) if many else 1
        self._statements.append(" ".join(statement.split())[:120] + (f" x{rows}" if many else ""))

    def _checkin(self, *_):
        if self._start is not None and self.phase is not None:
            took = time.perf_counter() - self._start
            self.records.append((self.phase, took, self._probe, len(self._statements)))
            if not self._probe and took > self.worst.get(self.phase, (0, []))[0]:
                self.worst[self.phase] = (took, self._statements)
        self._start = None


def pct(values, q):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main():
    # On tmpfs where there is one: the machine's shared disk (fsync stalls of seconds while
    # other work writes) is not what is measured.
    shm = Path("/dev/shm")
    data = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None))
    path = data / "registry.db"
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()
    now = datetime.now(UTC)
    seed(path, now)
    common = dict(
        data_dir=data, database_url=url, secret_key="b" * 48, public_url="http://bench",
        rate_limit="off", run_jobs=False, local_storage_events=False,
    )
    settings = load_settings(**common)
    secret = "whsec_QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
    hook = {"url": "http://127.0.0.1:9/hook", "secret": secret}
    hooked = load_settings(**common, webhooks=[hook])
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    holds = Holds(engine)
    storage = LocalStorage(data / "store", public_url="http://bench", secret="s" * 40)
    latencies = {}
    stop = asyncio.Event()

    async def probe():
        while not stop.is_set():
            started = time.perf_counter()
            async with sessionmaker() as session, session.begin():
                await session.execute(text("INSERT INTO bench_probe (at) VALUES (:at)"),
                                      {"at": started})
            latencies.setdefault(holds.phase, []).append(time.perf_counter() - started)
            await asyncio.sleep(0.002)

    async def undispatched():
        async with sessionmaker() as session:
            query = text("SELECT count(*) FROM file_events WHERE NOT dispatched")
            found = await session.scalar(query)
            await session.rollback()
        return found

    async def dispatch(chosen):
        ctx = PeriodicContext(worker_id="bench", settings=chosen, storage=storage,
                              sessionmaker=sessionmaker)
        for _ in range(10_000):
            await DISPATCH.run(ctx)
            if not await undispatched():
                return

    async def noop(ctx):
        pass

    runner = JobRunner(sessionmaker=sessionmaker, storage=storage, settings=settings,
                       kinds={"noop": JobKind(name="noop", run=noop)}, worker_id="bench")
    results = {}

    async def phase(name, work):
        holds.phase = name
        started = time.perf_counter()
        result = await work()
        results[name] = {"wall_s": time.perf_counter() - started, "result": result}
        holds.phase = None

    probes = [asyncio.create_task(probe()) for _ in range(PROBES)]
    await phase("idle", lambda: asyncio.sleep(2.0))
    await phase("dispatch", lambda: dispatch(settings))
    async with sessionmaker() as session, session.begin():
        again = f"UPDATE file_events SET dispatched = 0 WHERE id > {OLD_EVENTS}"
        await session.execute(text(again))
    await phase("dispatch-webhook", lambda: dispatch(hooked))

    async def run_jobs():
        return await runner.run_until_idle(max_rounds=RUN_JOBS // settings.job_concurrency)

    await phase("jobs", run_jobs)

    async def sweep_once():
        report = await sweep(sessionmaker, storage, settings)
        found = report.as_dict()
        return {k: found.get(k) for k in ("expired_pending", "jobs_pruned", "events_pruned")}

    await phase("sweep", sweep_once)
    stop.set()
    await asyncio.gather(*probes)
    await engine.dispose()
    out = {}
    for name, info in results.items():
        background = [s for p, s, probe, _ in holds.records if p == name and not probe]
        statements = [n for p, _, probe, n in holds.records if p == name and not probe]
        lat = latencies.get(name, [])
        out[name] = {
            **info,
            "holds": len(background),
            "hold_max_ms": 1000 * max(background) if background else None,
            "hold_p99_ms": 1000 * pct(background, 0.99) if background else None,
            "held_s": sum(background),
            "statements_max": max(statements) if statements else None,
            "worst_hold": holds.worst.get(name, (0, []))[1][:12],
            "requests": len(lat),
            "request_p50_ms": 1000 * pct(lat, 0.5) if lat else None,
            "request_p99_ms": 1000 * pct(lat, 0.99) if lat else None,
            "request_max_ms": 1000 * max(lat) if lat else None,
        }
    print(json.dumps(out))


asyncio.run(main())
"""

PHASES = ("idle", "dispatch", "dispatch-webhook", "jobs", "sweep")


def run(tree: Path, sizes: list[int]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIGUPLOAD_")}
    env["PYTHONPATH"] = str(tree / "src")
    done = subprocess.run(
        [sys.executable, "-c", WORKLOAD, *map(str, sizes)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the workload failed:\n{done.stderr[-3000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, default=[], help="a checkout")
    parser.add_argument("--base", help="a revision of this repository, measured first")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--pending", type=int, default=2_000)
    parser.add_argument("--old-events", type=int, default=100_000)
    parser.add_argument("--new-events", type=int, default=10_000)
    parser.add_argument("--finished-jobs", type=int, default=100_000)
    parser.add_argument("--due-jobs", type=int, default=10_000)
    parser.add_argument("--run-jobs", type=int, default=2_000, help="jobs the runner phase runs")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "background_holds.json")
    args = parser.parse_args()
    sizes = [
        args.files,
        args.pending,
        args.old_events,
        args.new_events,
        args.finished_jobs,
        args.due_jobs,
        args.run_jobs,
    ]
    with tempfile.TemporaryDirectory(prefix="bigupload-holds-") as tmp:
        trees: list[tuple[str, Path]] = []
        if args.base:
            trees.append((args.base, export(args.base, Path(tmp))))
        trees += [
            (str(t), t.resolve()) for t in (args.tree or ([] if args.base else [HERE.parent]))
        ]
        results: dict[str, Any] = {}
        for name, tree in trees:
            print(f"{name}: running the workload ...", file=sys.stderr)
            results[name] = run(tree, sizes)
    print(
        "| phase | tree | holds | max hold ms | p99 hold ms | held s | wall s "
        "| statements per hold (max) | request p50 ms | request p99 ms | request max ms | result |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for phase in PHASES:
        for name, found in results.items():
            row = found[phase]
            print(
                f"| {phase} | {name} | {row['holds']} | {_ms(row['hold_max_ms'])} "
                f"| {_ms(row['hold_p99_ms'])} | {row['held_s']:.2f} | {row['wall_s']:.2f} "
                f"| {row['statements_max'] or '-'} "
                f"| {_ms(row['request_p50_ms'])} | {_ms(row['request_p99_ms'])} "
                f"| {_ms(row['request_max_ms'])} | {json.dumps(row['result'])} |"
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"sizes": sizes, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
