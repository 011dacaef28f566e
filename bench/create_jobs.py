"""``POST /api/v1/uploads`` at 64 clients with the job runner on and off, for each tree, in one run:
what the background work (the outbox dispatcher marking every create's event, the sweep, job
claims) costs the requests that share SQLite's one connection with it.

For each tree (``--tree DIR``, whose ``src/`` goes first on ``PYTHONPATH``; ``--base REV``
exports revision ``REV`` of this repository with ``git archive`` and measures it first) two
``bigupload serve`` processes run on the embedded defaults (SQLite, the local store), one with
``BIGUPLOAD_RUN_JOBS=false``; the rate limit is off. The servers are driven in turn by
``bench/create_upload.py``'s closed-loop load generator, ``--rounds`` times, and the medians over
rounds of req/s and p99 are reported, with the ratio jobs on / jobs off.

    .venv/bin/python bench/create_jobs.py --base 7fb6aaf --tree .
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

# Sibling modules: run as ``python bench/create_jobs.py``, this directory is on sys.path.
from create_upload import RunResult, Target, json_post, run_level
from loadgen import loop_factory
from revisions import export
from servers import Server, log, start_bigupload_with_key, stop

HERE = Path(__file__).resolve().parent


def start(tree: Path, workdir: Path, jobs: bool) -> Server:
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree / "src")
    try:
        settings = {"BIGUPLOAD_RATE_LIMIT": "off", "BIGUPLOAD_RUN_JOBS": str(jobs).lower()}
        return start_bigupload_with_key(workdir, "bigupload", settings)
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--base", help="a revision of this repository, measured first")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    factory, _ = loop_factory()
    with (
        tempfile.TemporaryDirectory(prefix="bigupload-jobs-") as tmp,
        asyncio.Runner(loop_factory=factory) as runner,
    ):
        trees: list[tuple[str, Path]] = []
        if args.base:
            trees.append((args.base, export(args.base, Path(tmp) / "base")))
        chosen = args.tree or ([] if args.base else [HERE.parent])
        trees += [(str(t), t.resolve()) for t in chosen]
        servers: dict[tuple[str, bool], Server] = {}
        results: dict[tuple[str, bool], list[RunResult]] = {}
        try:
            for n, (name, tree) in enumerate(trees):
                for jobs in (True, False):
                    workdir = Path(tmp) / f"{n}-{'on' if jobs else 'off'}"
                    workdir.mkdir()
                    servers[name, jobs] = start(tree, workdir, jobs)
            for round_no in range(1, args.rounds + 1):
                for key, server in servers.items():
                    result = runner.run(
                        run_level(
                            Target(server, json_post(server, "/api/v1/uploads")),
                            args.clients,
                            warmup=args.warmup,
                            seconds=args.seconds,
                            max_requests=1_000_000,
                            request_timeout=30.0,
                            round_no=round_no,
                        )
                    )
                    results.setdefault(key, []).append(result)
                    log(
                        f"round {round_no} {key[0]} jobs {'on ' if key[1] else 'off'}: "
                        f"{result.rps:7.0f} req/s  p99 {result.p99_ms:7.1f} ms  "
                        f"errors {result.errors}"
                    )
        finally:
            for server in servers.values():
                stop(server.proc, server.name)
    print(
        f"| tree | jobs | req/s | p50 ms | p99 ms | p99 on / off "
        f"| errors ({args.clients} clients) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    failed = False
    for name, _ in trees:
        off_p99 = statistics.median(r.p99_ms for r in results[name, False])
        for jobs in (True, False):
            runs = results[name, jobs]
            p99 = statistics.median(r.p99_ms for r in runs)
            errors = sum(r.errors + r.warmup_errors for r in runs)
            failed = failed or errors > 0
            print(
                f"| {name} | {'on' if jobs else 'off'} "
                f"| {statistics.median(r.rps for r in runs):.0f} "
                f"| {statistics.median(r.p50_ms for r in runs):.1f} | {p99:.1f} "
                f"| {p99 / off_p99:.2f} | {errors} |"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
