"""Benchmark ``POST /api/v1/uploads`` against a bare presigned-URL baseline and Uppy Companion.

Starts, as separate processes on loopback:

* ``bigupload serve --port P`` once per ``--registry``: on the embedded defaults (local disk
  store, the job runner on) in a fresh temporary data directory, with the SQLite registry
  (``bigupload-sqlite``) or a throwaway PostgreSQL server (``bigupload-postgresql``: initdb in a
  temporary directory, a free loopback port, by ``tests/support/postgres.py``) named by
  ``BIGUPLOAD_DATABASE_URL``; the admin key is read from its stderr;
* ``bench/baseline_app.py`` (``baseline``): a minimal FastAPI app whose ``POST /sign`` parses
  the same JSON body and answers a presigned S3 PUT URL from one reused boto3 client, served by
  uvicorn with the same settings (one worker, ``log_level=warning``, no access log);
* Uppy Companion (``companion``, unless ``--no-companion``): ``bench/companion/server.mjs``, the
  ``companion.app(options)`` Express app with fake S3 credentials and a loopback endpoint, under
  node (installed on first use by ``scripts/install-companion.sh``, version pinned). It is driven
  with the request Uppy's ``@uppy/aws-s3`` makes for a single-file upload, ``GET /s3/params``
  (``filename``, ``type`` and the file's meta fields): Companion answers a presigned POST policy
  computed in its process. Its multipart create (``POST /s3/multipart``) would call S3's
  CreateMultipartUpload, a network round trip to a store, so it is not a signing-only request.

A closed-loop load generator (raw asyncio streams, one HTTP/1.1 keep-alive connection per
client, pre-encoded request bytes) drives each at 1, 16 and 64 concurrent clients: a warm-up,
then a measured window. Targets alternate within each (round, level) so that the machine's noise
hits all of them, each (target, level) is repeated ``--rounds`` times, and the median over rounds
of req/s, p50 and p99 is reported, with the ratios bigupload/baseline and bigupload/Companion,
and the verdict on issue 12's targets. Server CPU is the CPU time of the server process (and its
children); for PostgreSQL, the database server's own CPU per request is reported beside it.

    .venv/bin/python bench/create_upload.py            # 3 rounds x 5 s per (target, level)
    .venv/bin/python bench/create_upload.py --quick    # smoke run: 1 round x 1 s
    .venv/bin/python bench/create_upload.py --registry sqlite --no-companion
    .venv/bin/python bench/create_upload.py --registry sqlite --no-companion --metrics-off-twin

With ``--metrics-off-twin`` each bigupload target has a twin started with
``BIGUPLOAD_METRICS=off`` (``bigupload-<registry>-nometrics``), alternated with it in the same
rounds; the report adds req/s and server CPU per request with metrics on over off (the budget:
under 5 % of req/s lost).

The load generator lives in ``bench/loadgen.py`` and the server processes are handled by
``bench/servers.py``; this module is the experiment, its statistics and its report.

The markdown table goes to stdout, progress to stderr, the JSON to
``bench/results/create_upload.json``. The exit status is 1 if any request failed (non-2xx,
timeout or dropped connection), 0 otherwise; a missed target does not change it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

# Sibling modules: run as ``python bench/create_upload.py``, this directory is on sys.path.
from loadgen import encode_request, loop_factory, run_load
from servers import (
    HOST,
    Server,
    cpu_seconds,
    log,
    start_baseline,
    start_bigupload,
    start_companion,
    stop,
    tail,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "create_upload.json"

REGISTRIES = ("sqlite", "postgresql")

#: Issue 12's targets: at 16 and 64 clients, bigupload's req/s at least 1.0x the bare signer's
#: and 3x Companion's; at 64 clients, a p99 under 200 ms; on SQLite and on PostgreSQL alike.
RATIO_LEVELS = (16, 64)
MIN_RATIO = {"baseline": 1.0, "companion": 3.0}
TARGET_LEVEL = 64
TARGET_P99_MS = 200.0

#: The same small body for bigupload and the baseline (no checksum, no metadata).
FILENAME = "bench.bin"
CONTENT_TYPE = "application/octet-stream"
BODY = json.dumps(
    {"filename": FILENAME, "content_type": CONTENT_TYPE, "size": 1048576},
    separators=(",", ":"),
).encode()

#: What ``@uppy/aws-s3`` asks Companion for one file: its name, type and meta fields.
COMPANION_PATH = "/s3/params?" + urllib.parse.urlencode(
    {
        "filename": FILENAME,
        "type": CONTENT_TYPE,
        "metadata[name]": FILENAME,
        "metadata[type]": CONTENT_TYPE,
    }
)

#: The name suffix of a ``--metrics-off-twin`` target.
NO_METRICS = "-nometrics"

#: ``--rate-limit`` default: the per-owner limiter stays on the request path (same shape as the
#: shipped ``100/second;3000/minute``, so the same counter work per request) but never binds. The
#: shipped limit would answer 429 to a single-key load test past 100 req/s (50/s sustained).
UNBINDING_RATE_LIMIT = "1000000/second;60000000/minute"


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    """A server under load, the one request it is sent, and the database server behind it."""

    server: Server
    request: bytes
    db_pid: int | None = None  # the PostgreSQL postmaster, whose CPU time is reported apart

    @property
    def name(self) -> str:
        return self.server.name


def json_post(server: Server, path: str) -> bytes:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Content-Length": str(len(BODY)),
        **server.auth_headers,
    }
    return encode_request(HOST, server.port, "POST", path, headers, BODY)


def companion_get(server: Server) -> bytes:
    headers = {"Accept": "application/json"}
    return encode_request(HOST, server.port, "GET", COMPANION_PATH, headers, b"")


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


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
    db_cpu_ms_per_req: float | None  # the PostgreSQL server's, when there is one
    client_cpu_pct: float  # the load generator, of one core


async def run_level(
    target: Target,
    clients: int,
    *,
    warmup: float,
    seconds: float,
    max_requests: int,
    request_timeout: float,
    round_no: int,
) -> RunResult:
    db_samples: list[float | None] = []
    db_pid = target.db_pid

    def probe() -> float | None:  # run_load samples it once at each end of the window
        if db_pid is not None:
            db_samples.append(cpu_seconds(db_pid, reaped=True))
        return target.server.cpu_seconds()

    load = await run_load(
        HOST,
        target.server.port,
        target.request,
        clients,
        warmup=warmup,
        seconds=seconds,
        max_requests=max_requests,
        request_timeout=request_timeout,
        probe=probe,
    )
    ok, server_cpu = load.ok, load.probe_delta
    db_cpu: float | None = None
    if len(db_samples) == 2 and db_samples[0] is not None and db_samples[1] is not None:
        db_cpu = db_samples[1] - db_samples[0]
    return RunResult(
        target=target.name,
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
        db_cpu_ms_per_req=None if db_cpu is None or not ok else 1000 * db_cpu / ok,
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
    db_cpu_ms_per_req: float | None
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
        db_cpu_ms_per_req=_median_or_none([r.db_cpu_ms_per_req for r in runs]),
        client_cpu_pct=statistics.median(r.client_cpu_pct for r in runs),
    )


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def ratio_rows(
    by_key: dict[tuple[str, int], Summary], ours: Sequence[str], others: Sequence[str]
) -> list[dict[str, Any]]:
    """For each bigupload target and level: req/s and p99 over each comparison target's."""
    rows: list[dict[str, Any]] = []
    for name in ours:
        for clients in sorted({c for (t, c) in by_key if t == name}):
            mine = by_key[name, clients]
            row: dict[str, Any] = {"target": name, "clients": clients}
            for other in others:
                theirs = by_key.get((other, clients))
                if theirs is None:
                    continue
                row[f"rps_ratio_{other}"] = _ratio(mine.rps, theirs.rps)
                row[f"p99_ratio_{other}"] = _ratio(mine.p99_ms, theirs.p99_ms)
            rows.append(row)
    return rows


def metrics_cost(
    by_key: dict[tuple[str, int], Summary], twins: Sequence[str]
) -> list[dict[str, Any]]:
    """For each target with a metrics-off twin and level: req/s and CPU per request, on / off."""
    rows: list[dict[str, Any]] = []
    for twin in twins:
        name = twin.removesuffix(NO_METRICS)
        for clients in sorted({c for (t, c) in by_key if t == name}):
            on, off = by_key.get((name, clients)), by_key.get((twin, clients))
            if on is None or off is None:
                continue
            cpu_on, cpu_off = on.server_cpu_ms_per_req, off.server_cpu_ms_per_req
            rows.append(
                {
                    "target": name,
                    "clients": clients,
                    "rps_on": on.rps,
                    "rps_off": off.rps,
                    "rps_ratio": _ratio(on.rps, off.rps),
                    "cpu_ms_per_req_on": cpu_on,
                    "cpu_ms_per_req_off": cpu_off,
                    "cpu_ratio": _ratio(cpu_on, cpu_off) if cpu_on and cpu_off else math.nan,
                }
            )
    return rows


def render_metrics_cost(rows: Sequence[dict[str, Any]]) -> str:
    out = [
        "Metrics on vs off (same run, alternated; budget: under 5 % of req/s lost):",
        "",
        "| clients | target | req/s on | req/s off | on / off | CPU ms/req on | CPU ms/req off "
        "| on / off |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        out.append(
            f"| {row['clients']} | {row['target']} | {_fmt(row['rps_on'], 0)} | "
            f"{_fmt(row['rps_off'], 0)} | {_fmt(row['rps_ratio'], 3)} | "
            f"{_fmt(row['cpu_ms_per_req_on'], 3)} | {_fmt(row['cpu_ms_per_req_off'], 3)} | "
            f"{_fmt(row['cpu_ratio'], 3)} |"
        )
    return "\n".join(out)


@dataclass
class Verdict:
    target: str  # bigupload-sqlite, bigupload-postgresql
    text: str
    measured: str
    passed: bool | None  # None: not measured

    @property
    def word(self) -> str:
        return {True: "PASS", False: "FAIL", None: "NOT MEASURED"}[self.passed]


def verdicts(
    by_key: dict[tuple[str, int], Summary], ours: Sequence[str], others: Sequence[str]
) -> list[Verdict]:
    out: list[Verdict] = []
    for name in ours:
        for other in others:
            need = MIN_RATIO[other]
            for clients in RATIO_LEVELS:
                mine, theirs = by_key.get((name, clients)), by_key.get((other, clients))
                text = f"req/s at least {need:.1f}x {other}'s at {clients} clients"
                if mine is None or theirs is None or not theirs.rps:
                    out.append(Verdict(name, text, "-", None))
                    continue
                ratio = mine.rps / theirs.rps
                out.append(Verdict(name, text, f"{ratio:.2f}x", ratio >= need))
        mine = by_key.get((name, TARGET_LEVEL))
        text = f"p99 under {TARGET_P99_MS:g} ms at {TARGET_LEVEL} clients"
        if mine is None:
            out.append(Verdict(name, text, "-", None))
        else:
            out.append(Verdict(name, text, f"{mine.p99_ms:.1f} ms", mine.p99_ms < TARGET_P99_MS))
    return out


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def render(
    summaries: Sequence[Summary],
    ratios: Sequence[dict[str, Any]],
    others: Sequence[str],
    checks: Sequence[Verdict],
    results: Sequence[RunResult],
    meta: dict[str, Any],
) -> str:
    out: list[str] = []
    out.append(
        f"## POST /api/v1/uploads (bigupload) vs POST /sign (baseline) vs GET /s3/params "
        f"(Companion): median of {meta['rounds']} round(s) x {meta['seconds']:g} s"
    )
    out.append("")
    out.append(
        f"os.cpu_count() = {meta['cpu_count']}; Python {meta['python']}; "
        f"load generator loop: {meta['loop']}; warm-up {meta['warmup']:g} s per run; "
        f"bigupload: local store, job runner on, default settings (log level INFO), "
        f"BIGUPLOAD_RATE_LIMIT={meta['rate_limit']}; Companion {meta.get('companion') or '-'}"
    )
    out.append("")
    out.append(
        "| clients | target | req/s (median) | req/s (min-max) | p50 ms | p99 ms | errors "
        "| server CPU % | server CPU ms/req | PostgreSQL CPU ms/req | loadgen CPU % |"
    )
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        out.append(
            f"| {s.clients} | {s.target} | {_fmt(s.rps, 0)} | "
            f"{_fmt(s.rps_min, 0)}-{_fmt(s.rps_max, 0)} | {_fmt(s.p50_ms, 2)} | "
            f"{_fmt(s.p99_ms, 2)} | {s.errors} | {_fmt(s.server_cpu_pct, 0)} | "
            f"{_fmt(s.server_cpu_ms_per_req, 2)} | {_fmt(s.db_cpu_ms_per_req, 2)} | "
            f"{_fmt(s.client_cpu_pct, 0)} |"
        )
    out.append("")
    header = "| clients | target |"
    rule = "|---:|---|"
    for other in others:
        header += f" req/s / {other} | p99 / {other} |"
        rule += "---:|---:|"
    out.append(header)
    out.append(rule)
    for row in ratios:
        line = f"| {row['clients']} | {row['target']} |"
        for other in others:
            line += (
                f" {_fmt(row.get(f'rps_ratio_{other}'), 2)} |"
                f" {_fmt(row.get(f'p99_ratio_{other}'), 2)} |"
            )
        out.append(line)
    out.append("")
    out.append("Targets of issue 12 (job runner on):")
    out.append("")
    out.append("| target | requirement | measured | verdict |")
    out.append("|---|---|---:|---|")
    for check in checks:
        out.append(f"| {check.target} | {check.text} | {check.measured} | {check.word} |")
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
        "--registry",
        default=",".join(REGISTRIES),
        help="bigupload's registries, comma-separated: sqlite, postgresql [sqlite,postgresql]",
    )
    parser.add_argument(
        "--no-companion", action="store_true", help="leave Uppy Companion out (no node needed)"
    )
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
        "--workers", type=int, default=1, help="server processes, for the Python targets alike"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a BIGUPLOAD_ setting for the bigupload targets (repeatable), for experiments "
        "such as BIGUPLOAD_RUN_JOBS=false",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run the bigupload servers under cProfile, writing DIR/<target>.prof (slower)",
    )
    parser.add_argument(
        "--metrics-off-twin",
        action="store_true",
        help="also run each bigupload target with BIGUPLOAD_METRICS=off, to compare",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON results")
    args = parser.parse_args(argv)
    settings: dict[str, str] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("BIGUPLOAD_"):
            parser.error("--set takes BIGUPLOAD_NAME=VALUE")
        settings[name] = value
    args.set = settings
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
    args.registry = [name.strip() for name in args.registry.split(",") if name.strip()]
    if not args.registry or any(name not in REGISTRIES for name in args.registry):
        parser.error(f"--registry must name one or more of {', '.join(REGISTRIES)}")
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


@dataclass
class Fleet:
    """Every process this run started, to be stopped by PID whatever happens."""

    targets: list[Target] = field(default_factory=list)
    stoppers: list[Callable[[], None]] = field(default_factory=list)


@contextlib.contextmanager
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL (tests/support/postgres.py): its own temp dir, a free port."""
    sys.path.insert(0, str(REPO))
    from tests.support.postgres import PostgresServer

    with PostgresServer() as server:
        yield server


def companion_version() -> str | None:
    path = BENCH_DIR / "companion" / "node_modules" / "@uppy" / "companion" / "package.json"
    try:
        version: str = json.loads(path.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version


def start_targets(
    args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack, fleet: Fleet
) -> None:
    variants = [("", {})]
    if args.metrics_off_twin:
        variants.append((NO_METRICS, {"BIGUPLOAD_METRICS": "off"}))
    for registry, (suffix, variant) in itertools.product(args.registry, variants):
        name = f"bigupload-{registry}{suffix}"
        # This checkout's bigupload, whatever the environment has installed.
        path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
        settings: dict[str, str] = {"PYTHONPATH": path, **args.set, **variant}
        db_pid: int | None = None
        if registry == "postgresql":
            pg = stack.enter_context(postgres_server())
            settings["BIGUPLOAD_DATABASE_URL"] = pg.url
            db_pid = pg.pid
            log(f"postgresql: pid {pg.pid}, {pg.url}")
        profile = None
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            profile = args.profile.resolve() / f"{name}.prof"
        server = start_bigupload(
            workdir, args.rate_limit, args.workers, name=name, settings=settings, profile=profile
        )
        fleet.stoppers.append(lambda s=server: stop(s.proc, s.name))
        fleet.targets.append(Target(server, json_post(server, "/api/v1/uploads"), db_pid))
    baseline = start_baseline(workdir, args.workers)
    fleet.stoppers.append(lambda: stop(baseline.proc, baseline.name))
    fleet.targets.append(Target(baseline, json_post(baseline, "/sign")))
    if not args.no_companion:
        companion = start_companion(workdir)
        fleet.stoppers.append(lambda: stop(companion.proc, companion.name))
        fleet.targets.append(Target(companion, companion_get(companion)))


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
        "registries": args.registry,
        "rate_limit": args.rate_limit or "(shipped default)",
        "settings": args.set,
        "metrics_off_twin": args.metrics_off_twin,
        "profiled": args.profile is not None,
        "body": BODY.decode(),
        "companion_request": None if args.no_companion else f"GET {COMPANION_PATH}",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    results: list[RunResult] = []
    twins = 2 if args.metrics_off_twin else 1
    n_targets = twins * len(args.registry) + 1 + (0 if args.no_companion else 1)
    runs_total = args.rounds * len(args.levels) * n_targets
    estimate = runs_total * (args.warmup + args.seconds + 0.3)
    log(f"{runs_total} runs, about {estimate:.0f} s of load (os.cpu_count()={os.cpu_count()})")

    fleet = Fleet()
    with (
        terminate_as_exit() as termination,
        tempfile.TemporaryDirectory(prefix="bigupload-bench-") as tmp,
        contextlib.ExitStack() as stack,  # the PostgreSQL servers: stopped after the targets
        asyncio.Runner(loop_factory=factory) as runner,
    ):
        workdir = Path(tmp)
        try:
            start_targets(args, workdir, stack, fleet)
            if not args.no_companion:
                meta["companion"] = companion_version()
            for target in fleet.targets:
                log(f"{target.name}: pid {target.server.proc.pid}, {target.server.url}")
            for round_no in range(1, args.rounds + 1):
                for clients in args.levels:
                    # Alternate: each target in turn, starting one further on each round, so
                    # that no target always follows the same one.
                    shift = (round_no - 1) % len(fleet.targets)
                    for target in fleet.targets[shift:] + fleet.targets[:shift]:
                        try:
                            result = runner.run(
                                run_level(
                                    target,
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
                            f"round {round_no} {target.name:20} {clients:3} clients: "
                            f"{result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                            f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
                            f"  server CPU {_fmt(result.server_cpu_pct, 0)}%"
                            f"  loadgen CPU {result.client_cpu_pct:.0f}%"
                        )
                        for other in fleet.targets:
                            if other.server.proc.poll() is not None:
                                raise RuntimeError(f"{other.name} died during the benchmark")
                        time.sleep(0.3)
        finally:
            for stopper in reversed(fleet.stoppers):
                stopper()
            servers = [t.server for t in fleet.targets]
            crashed = [s for s in servers if s.proc.returncode not in (0, -signal.SIGTERM)]
            for server in crashed:
                status = server.proc.returncode
                log(f"{server.name} exit status {status}:\n{tail(server.stderr_path)}")

    names = [t.name for t in fleet.targets]
    twins = [n for n in names if n.endswith(NO_METRICS)]
    ours = [n for n in names if n.startswith("bigupload-") and n not in twins]
    others = [n for n in names if n not in ours and n not in twins]
    summaries = [summarize(results, name, clients) for clients in args.levels for name in names]
    by_key = {(s.target, s.clients): s for s in summaries}
    ratios = ratio_rows(by_key, ours, others)
    checks = verdicts(by_key, ours, others)

    metrics_rows = metrics_cost(by_key, twins)
    print(render(summaries, ratios, others, checks, results, meta))
    if metrics_rows:
        print("\n" + render_metrics_cost(metrics_rows))
    print(f"\nos.cpu_count() = {os.cpu_count()}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "create_upload",
        "meta": meta,
        "targets": [asdict(c) | {"verdict": c.word} for c in checks],
        "summary": [asdict(s) for s in summaries],
        "ratios": ratios,
        "metrics_cost": metrics_rows,
        "runs": [asdict(r) for r in results],
    }
    args.output.write_text(json.dumps(no_nan(payload), indent=2, allow_nan=False) + "\n")
    log(f"wrote {args.output}")
    return 1 if any(r.errors or r.warmup_errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
