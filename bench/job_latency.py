"""How long a job waits between its enqueue's commit and its start, and how many queries an idle
runner makes, with LISTEN/NOTIFY wake-ups and with polling alone, on one PostgreSQL.

Both modes run in one process against one throwaway PostgreSQL (tests/support/postgres.py, or
``--database-url``): a runner with every job kind and periodic a process has (plus ``bench``),
on an engine of its own, and an enqueuer on another. The runner is not told of this process's
commits directly (as a runner of another process is not), so only the database wakes it:

- ``poll``: ``BIGUPLOAD_JOB_NOTIFY=off``, polling every ``job_poll_interval`` (1 s by default):
  how runners worked before;
- ``notify``: ``auto``: LISTEN/NOTIFY, polling every ``job_notify_poll_interval`` (30 s).

Latency: ``--jobs`` jobs, one at a time, each after a random pause of up to one poll interval
(so that enqueues do not fall in step with the polls); a job's latency is from just before its
commit to the start of its handler (one clock: one process). Idle: every statement the runner's
engine sends in ``--idle`` seconds with nothing to do, per minute; the listener's own check
(one ``SELECT 1`` every ``job_notify_poll_interval`` on its connection) is counted besides.

    .venv/bin/python bench/job_latency.py                 # 50 jobs, 30 s idle per mode
    .venv/bin/python bench/job_latency.py --jobs 10 --idle 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from sqlalchemy import event  # noqa: E402

from bigupload import migrate  # noqa: E402
from bigupload.config import load_settings  # noqa: E402
from bigupload.db import create_engine, create_sessionmaker  # noqa: E402
from bigupload.jobs import wakeups  # noqa: E402
from bigupload.jobs.kinds import JobContext, JobKind  # noqa: E402
from bigupload.jobs.queue import enqueue  # noqa: E402
from bigupload.jobs.registry import job_kinds, periodics  # noqa: E402
from bigupload.jobs.runner import JobRunner  # noqa: E402
from bigupload.storage.local import LocalStorage  # noqa: E402

SECRET = "bench-secret-" + "x" * 40


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.support.postgres import PostgresServer

    with PostgresServer() as server:
        yield server.create_database("bench_jobs")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(url: str, mode: str, jobs: int, idle: float, data: Path) -> dict[str, Any]:
    settings = load_settings(
        database_url=url,
        data_dir=data / mode,
        secret_key=SECRET,
        public_url="http://127.0.0.1:9",
        job_notify="off" if mode == "poll" else "auto",
    )
    runner_engine = create_engine(url)
    enqueuer_engine = create_engine(url)
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    event.listen(runner_engine.sync_engine, "before_cursor_execute", count)
    started: dict[int, float] = {}
    began = asyncio.Event()

    async def bench(ctx: JobContext) -> None:
        started[int(ctx.payload["n"])] = time.perf_counter()
        began.set()

    kinds = {**job_kinds(settings), "bench": JobKind("bench", bench)}
    runner = JobRunner(
        sessionmaker=create_sessionmaker(runner_engine),
        storage=LocalStorage(data / mode / "store", public_url="http://127.0.0.1:9", secret=SECRET),
        settings=settings,
        kinds=kinds,
        periodics=periodics(),
    )
    await runner.start()
    wakeups.unregister(runner)  # as if in another process: woken by the database alone
    try:
        deadline = time.monotonic() + 30
        while mode == "notify" and not runner.listening:
            if time.monotonic() > deadline:
                raise RuntimeError("the runner does not listen")
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)  # the start's periodics (sweep, dispatch) are done

        # Idle: nothing to do.
        before = statements
        await asyncio.sleep(idle)
        per_minute = (statements - before) * 60 / idle
        listener_checks = 60 / settings.job_notify_poll_interval if mode == "notify" else 0.0

        # Latency.
        enqueuer = create_sessionmaker(enqueuer_engine)
        latencies = []
        pauses = random.Random(12)
        for n in range(jobs):
            await asyncio.sleep(pauses.uniform(0, settings.job_poll_interval))
            began.clear()
            async with enqueuer() as session, session.begin():
                await enqueue(session, "bench", {"n": n}, max_attempts=1)
                committing = time.perf_counter()
            await asyncio.wait_for(began.wait(), 60)
            latencies.append(started[n] - committing)
    finally:
        await runner.stop(timeout=5)
        await runner_engine.dispose()
        await enqueuer_engine.dispose()
    return {
        "mode": mode,
        "jobs": jobs,
        "median_ms": statistics.median(latencies) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "max_ms": max(latencies) * 1000,
        "idle_statements_per_minute": per_minute,
        "listener_checks_per_minute": listener_checks,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds measured")
    parser.add_argument("--database-url", help="a PostgreSQL registry (default: a throwaway one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with database(args.database_url) as url, tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(url)
        await migrate.upgrade(engine)
        await engine.dispose()
        results = [
            await measure(url, mode, args.jobs, args.idle, Path(tmp)) for mode in ("poll", "notify")
        ]
    poll, notify = results
    print("| mode | median | p95 | max | idle queries / min |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        extra = (
            f" (+ {r['listener_checks_per_minute']:.0f} listener checks)"
            if r["listener_checks_per_minute"]
            else ""
        )
        print(
            f"| {r['mode']} | {r['median_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['max_ms']:.1f} ms"
            f" | {r['idle_statements_per_minute']:.1f}{extra} |"
        )
    idle_notify = notify["idle_statements_per_minute"] + notify["listener_checks_per_minute"]
    idle_ratio = idle_notify / poll["idle_statements_per_minute"]
    print(
        f"notify/poll: median {notify['median_ms'] / poll['median_ms']:.3f}x,"
        f" p95 {notify['p95_ms'] / poll['p95_ms']:.3f}x, idle queries {idle_ratio:.3f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
