"""Benchmark ``POST /api/v1/uploads`` against a bare presigned-URL baseline.

Starts two servers as separate processes on loopback:

* ``bigupload serve --port P`` on the embedded defaults (SQLite registry + local disk store)
  in a fresh temporary data directory; the admin key is read from its stderr;
* ``bench/baseline_app.py``: a minimal FastAPI app whose ``POST /sign`` parses the same JSON
  body and answers a presigned S3 PUT URL from one reused boto3 client, served by uvicorn with
  the same settings (one worker, ``log_level=warning``, no access log).

A closed-loop load generator (raw asyncio streams, one HTTP/1.1 keep-alive connection per
client, pre-encoded request bytes) drives each at 1, 16 and 64 concurrent clients: a warm-up,
then a measured window. Targets alternate (bigupload, baseline, bigupload, ...) so that the
machine's noise hits both, each (target, level) is repeated ``--rounds`` times, and the median
over rounds of req/s, p50 and p99 is reported, with the ratio bigupload/baseline.

    .venv/bin/python bench/create_upload.py            # 3 rounds x 5 s per (target, level)
    .venv/bin/python bench/create_upload.py --quick    # smoke run: 1 round x 1 s

The load generator lives in ``bench/loadgen.py`` and the server processes are handled by
``bench/servers.py``; this module is the experiment, its statistics and its report.

The markdown table goes to stdout, progress to stderr, the JSON to
``bench/results/create_upload.json``. The exit status is 1 if any request failed (non-2xx,
timeout or dropped connection), 0 otherwise; a missed latency target does not change it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

# Sibling modules: run as ``python bench/create_upload.py``, this directory is on sys.path.
from loadgen import encode_request, loop_factory, run_load
from servers import HOST, Server, log, start_baseline, start_bigupload, stop, tail

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "create_upload.json"

#: The issue's target: "p99 under 25 ms at 64 clients".
TARGET_LEVEL = 64
TARGET_P99_MS = 25.0

#: The endpoint each target answers: the same small JSON body goes to both.
ENDPOINTS = {"bigupload": "/api/v1/uploads", "baseline": "/sign"}

#: The same small body for both targets (no checksum, no metadata).
BODY = json.dumps(
    {"filename": "bench.bin", "content_type": "application/octet-stream", "size": 1048576},
    separators=(",", ":"),
).encode()

#: ``--rate-limit`` default: the per-owner limiter stays on the request path (same shape as the
#: shipped ``100/second;3000/minute``, so the same counter work per request) but never binds. The
#: shipped limit would answer 429 to a single-key load test past 100 req/s (50/s sustained).
UNBINDING_RATE_LIMIT = "1000000/second;60000000/minute"


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def request_bytes(server: Server) -> bytes:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Content-Length": str(len(BODY)),
        **server.auth_headers,
    }
    return encode_request(HOST, server.port, "POST", ENDPOINTS[server.name], headers, BODY)


@dataclass
class RunResult:
    target: str
    clients: int
    round: int
    window_s: float
    ok: int
    errors: int
    failures: dict[str, int]
    warmup_ok: int
    warmup_errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_pct: float | None  # of one core, over the window
    server_cpu_ms_per_req: float | None
    client_cpu_pct: float  # the load generator, of one core


async def run_level(
    server: Server,
    clients: int,
    *,
    warmup: float,
    seconds: float,
    max_requests: int,
    request_timeout: float,
    round_no: int,
) -> RunResult:
    load = await run_load(
        HOST,
        server.port,
        request_bytes(server),
        clients,
        warmup=warmup,
        seconds=seconds,
        max_requests=max_requests,
        request_timeout=request_timeout,
        probe=server.cpu_seconds,
    )
    ok, server_cpu = load.ok, load.probe_delta
    return RunResult(
        target=server.name,
        clients=clients,
        round=round_no,
        window_s=round(load.elapsed_s, 3),
        ok=ok,
        errors=load.errors,
        failures=dict(load.failures),
        warmup_ok=load.warmup_ok,
        warmup_errors=load.warmup_errors,
        rps=load.rps,
        p50_ms=load.percentile_ms(0.50),
        p90_ms=load.percentile_ms(0.90),
        p99_ms=load.percentile_ms(0.99),
        max_ms=load.max_ms,
        server_cpu_pct=None if server_cpu is None else 100 * server_cpu / load.wall_s,
        server_cpu_ms_per_req=None if server_cpu is None or not ok else 1000 * server_cpu / ok,
        client_cpu_pct=100 * load.client_cpu_s / load.wall_s,
    )


# --------------------------------------------------------------------------------------------
# Summary and report
# --------------------------------------------------------------------------------------------


@dataclass
class Summary:
    target: str
    clients: int
    rounds: int
    rps: float
    rps_min: float
    rps_max: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_pct: float | None
    server_cpu_ms_per_req: float | None
    client_cpu_pct: float


def _median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(results: Sequence[RunResult], target: str, clients: int) -> Summary:
    runs = [r for r in results if r.target == target and r.clients == clients]
    return Summary(
        target=target,
        clients=clients,
        rounds=len(runs),
        rps=statistics.median(r.rps for r in runs),
        rps_min=min(r.rps for r in runs),
        rps_max=max(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors + r.warmup_errors for r in runs),
        server_cpu_pct=_median_or_none([r.server_cpu_pct for r in runs]),
        server_cpu_ms_per_req=_median_or_none([r.server_cpu_ms_per_req for r in runs]),
        client_cpu_pct=statistics.median(r.client_cpu_pct for r in runs),
    )


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def render(
    summaries: Sequence[Summary],
    ratios: Sequence[dict[str, Any]],
    target: dict[str, Any],
    results: Sequence[RunResult],
    meta: dict[str, Any],
) -> str:
    out: list[str] = []
    out.append(
        f"## POST /api/v1/uploads (bigupload) vs POST /sign (baseline): "
        f"median of {meta['rounds']} round(s) x {meta['seconds']:g} s"
    )
    out.append("")
    out.append(
        f"os.cpu_count() = {meta['cpu_count']}; Python {meta['python']}; "
        f"load generator loop: {meta['loop']}; warm-up {meta['warmup']:g} s per run; "
        f"bigupload: SQLite + local store, default settings (log level INFO), "
        f"BIGUPLOAD_RATE_LIMIT={meta['rate_limit']}"
    )
    out.append("")
    out.append(
        "| clients | target | req/s (median) | req/s (min-max) | p50 ms | p99 ms | errors "
        "| server CPU % | server CPU ms/req | loadgen CPU % |"
    )
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        out.append(
            f"| {s.clients} | {s.target} | {_fmt(s.rps, 0)} | "
            f"{_fmt(s.rps_min, 0)}-{_fmt(s.rps_max, 0)} | {_fmt(s.p50_ms, 2)} | "
            f"{_fmt(s.p99_ms, 2)} | {s.errors} | {_fmt(s.server_cpu_pct, 0)} | "
            f"{_fmt(s.server_cpu_ms_per_req, 2)} | {_fmt(s.client_cpu_pct, 0)} |"
        )
    out.append("")
    out.append("| clients | req/s bigupload/baseline | p99 bigupload/baseline |")
    out.append("|---:|---:|---:|")
    for ratio in ratios:
        out.append(
            f"| {ratio['clients']} | {_fmt(ratio['rps_ratio'], 2)} | "
            f"{_fmt(ratio['p99_ratio'], 2)} |"
        )
    out.append("")
    out.append(f'Target from the issue: "{target["text"]}": {target["verdict"]}')
    failed = [r for r in results if r.errors or r.warmup_errors]
    if failed:
        out.append("")
        out.append("**WARNING: some requests failed (non-2xx, timeout or dropped connection):**")
        for r in failed:
            out.append(
                f"- {r.target}, {r.clients} clients, round {r.round}: {r.errors} measured "
                f"{r.failures}, {r.warmup_errors} during warm-up"
            )
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def no_nan(value: Any) -> Any:
    """NaN (no sample) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of each run")
    parser.add_argument("--levels", default="1,16,64", help="concurrent clients, comma-separated")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before each window")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=200_000,
        help="upper bound of measured requests per run (the window may end earlier)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, s")
    parser.add_argument(
        "--rate-limit",
        default=UNBINDING_RATE_LIMIT,
        help="BIGUPLOAD_RATE_LIMIT for the server: a spec, 'off', or 'default' to keep the "
        f"shipped limit (which answers 429 past 100 req/s per key) [{UNBINDING_RATE_LIMIT}]",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s windows")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes, for both targets alike"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON results")
    args = parser.parse_args(argv)
    if args.rate_limit == "default":
        args.rate_limit = None
    if args.quick:
        args.seconds, args.rounds, args.warmup = 1.0, 1, 0.5
    try:
        args.levels = [int(level) for level in args.levels.split(",") if level.strip()]
    except ValueError:
        parser.error("--levels must be comma-separated integers, such as 1,16,64")
    if not args.levels or any(level < 1 or level > 1024 for level in args.levels):
        parser.error("--levels must name 1 to 1024 clients each")
    if args.seconds <= 0 or args.warmup < 0 or args.rounds < 1 or args.max_requests < 1:
        parser.error("--seconds and --rounds must be positive, --warmup not negative")
    return args


@dataclass
class Termination:
    signum: int | None = None


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[Termination]:
    """Let SIGTERM unwind like Ctrl-C so that the servers are always stopped.

    Outside the event loop the handler raises ``SystemExit``. Inside it, raising could surface
    in a C callback of the loop, where CPython exits on the spot without unwinding; so it
    cancels the running tasks instead, and ``main`` turns that cancellation into the exit.
    """
    state = Termination()

    def handler(signum: int, _frame: FrameType | None) -> None:
        state.signum = signum
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise SystemExit(128 + signum) from None
        for task in asyncio.all_tasks(loop):
            task.cancel()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    factory, loop_name = loop_factory()
    meta: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loop": loop_name,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "levels": args.levels,
        "warmup": args.warmup,
        "max_requests": args.max_requests,
        "timeout": args.timeout,
        "workers": args.workers,
        "rate_limit": args.rate_limit or "(shipped default)",
        "body": BODY.decode(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    results: list[RunResult] = []
    runs_total = args.rounds * len(args.levels) * 2
    estimate = runs_total * (args.warmup + args.seconds + 0.3)
    log(f"{runs_total} runs, about {estimate:.0f} s of load (os.cpu_count()={os.cpu_count()})")

    with (
        terminate_as_exit() as termination,
        tempfile.TemporaryDirectory(prefix="bigupload-bench-") as tmp,
        asyncio.Runner(loop_factory=factory) as runner,
    ):
        workdir = Path(tmp)
        servers: list[Server] = []
        try:
            servers.append(start_bigupload(workdir, args.rate_limit, args.workers))
            servers.append(start_baseline(workdir, args.workers))
            for server in servers:
                log(f"{server.name}: pid {server.proc.pid}, http://{HOST}:{server.port}")
            for round_no in range(1, args.rounds + 1):
                for clients in args.levels:
                    for server in servers:  # alternate: bigupload, baseline, bigupload, ...
                        try:
                            result = runner.run(
                                run_level(
                                    server,
                                    clients,
                                    warmup=args.warmup,
                                    seconds=args.seconds,
                                    max_requests=args.max_requests,
                                    request_timeout=args.timeout,
                                    round_no=round_no,
                                )
                            )
                        except asyncio.CancelledError:
                            if termination.signum is None:
                                raise
                            raise SystemExit(128 + termination.signum) from None
                        results.append(result)
                        log(
                            f"round {round_no} {server.name:9} {clients:3} clients: "
                            f"{result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                            f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
                            f"  server CPU {_fmt(result.server_cpu_pct, 0)}%"
                            f"  loadgen CPU {result.client_cpu_pct:.0f}%"
                        )
                        for name, proc in ((s.name, s.proc) for s in servers):
                            if proc.poll() is not None:
                                raise RuntimeError(f"{name} died during the benchmark")
                        time.sleep(0.3)
        finally:
            for server in servers:
                stop(server.proc, server.name)
            crashed = [s for s in servers if s.proc.returncode not in (0, -signal.SIGTERM)]
            for server in crashed:
                status = server.proc.returncode
                log(f"{server.name} exit status {status}:\n{tail(server.stderr_path)}")

    summaries = [
        summarize(results, server_name, clients)
        for clients in args.levels
        for server_name in ("bigupload", "baseline")
    ]
    by_key = {(s.target, s.clients): s for s in summaries}
    ratios = []
    for clients in args.levels:
        ours, base = by_key["bigupload", clients], by_key["baseline", clients]
        ratios.append(
            {
                "clients": clients,
                "rps_ratio": ours.rps / base.rps if base.rps else math.nan,
                "p99_ratio": ours.p99_ms / base.p99_ms if base.p99_ms else math.nan,
            }
        )
    target_text = f"p99 under {TARGET_P99_MS:g} ms at {TARGET_LEVEL} clients"
    measured = by_key.get(("bigupload", TARGET_LEVEL))
    if measured is None:
        verdict, passed = f"NOT MEASURED (--levels has no {TARGET_LEVEL})", None
    else:
        passed = measured.p99_ms < TARGET_P99_MS
        verdict = (
            f"{'PASS' if passed else 'FAIL'} (bigupload median p99 = "
            f"{measured.p99_ms:.2f} ms at {TARGET_LEVEL} clients)"
        )
    target = {
        "text": target_text,
        "level": TARGET_LEVEL,
        "threshold_ms": TARGET_P99_MS,
        "p99_ms": None if measured is None else measured.p99_ms,
        "pass": passed,
        "verdict": verdict,
    }

    print(render(summaries, ratios, target, results, meta))
    print(f"\nos.cpu_count() = {os.cpu_count()}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "create_upload",
        "meta": meta,
        "target": target,
        "summary": [asdict(s) for s in summaries],
        "ratios": ratios,
        "runs": [asdict(r) for r in results],
    }
    args.output.write_text(json.dumps(no_nan(payload), indent=2, allow_nan=False) + "\n")
    log(f"wrote {args.output}")
    return 1 if any(r.errors or r.warmup_errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
