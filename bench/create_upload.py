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
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "create_upload.json"
HOST = "127.0.0.1"

#: The issue's target: "p99 under 25 ms at 64 clients".
TARGET_LEVEL = 64
TARGET_P99_MS = 25.0

#: The same small body for both targets (no checksum, no metadata).
BODY = json.dumps(
    {"filename": "bench.bin", "content_type": "application/octet-stream", "size": 1048576},
    separators=(",", ":"),
).encode()

#: ``--rate-limit`` default: the per-owner limiter stays on the request path (same shape as the
#: shipped ``100/second;3000/minute``, so the same counter work per request) but never binds. The
#: shipped limit would answer 429 to a single-key load test past 100 req/s (50/s sustained).
UNBINDING_RATE_LIMIT = "1000000/second;60000000/minute"

_ADMIN_KEY_RE = re.compile(r"shown only once:\s*\n\s*(bu_[A-Za-z0-9_-]+)")
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CONNECTION_CLOSE = b"\r\nconnection: close"
#: How often one client may reconnect after a dropped connection before it gives up.
_MAX_RECONNECTS = 50


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    path: str
    headers: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes]
    stderr_path: Path

    def request_bytes(self) -> bytes:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {HOST}:{self.port}",
            "Content-Type: application/json",
            "Accept: application/json",
            f"Content-Length: {len(BODY)}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + BODY

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process (all its threads), from /proc."""
        try:
            raw = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = raw.rsplit(")", 1)[1].split()
        # After "pid (comm)": field 3 (state) is index 0, so utime (14) and stime (15) are
        # indices 11 and 12, in clock ticks.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def server_env(data_dir: Path | None, rate_limit: str | None = None) -> dict[str, str]:
    """The caller's environment without any BIGUPLOAD_/AWS_ setting: embedded defaults only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIGUPLOAD_", "AWS_"))}
    if data_dir is not None:
        env["BIGUPLOAD_DATA_DIR"] = str(data_dir)
    if rate_limit is not None:
        env["BIGUPLOAD_RATE_LIMIT"] = rate_limit
    return env


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def spawn(
    argv: Sequence[str], env: dict[str, str], cwd: Path, stderr_path: Path
) -> subprocess.Popen[bytes]:
    """Start a server; its stdout and stderr go to a file (a pipe could fill up and block it)."""
    with stderr_path.open("wb") as stderr:
        return subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
        )


def wait_ready(
    proc: subprocess.Popen[bytes],
    name: str,
    port: int,
    stderr_path: Path,
    *,
    want_key: bool,
    timeout: float = 60.0,
) -> str | None:
    """Wait (bounded) until the port accepts connections and, if asked, the admin key is out."""
    deadline = time.monotonic() + timeout
    key: str | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with status {proc.returncode} while starting:\n" + tail(stderr_path)
            )
        if want_key and key is None:
            match = _ADMIN_KEY_RE.search(stderr_path.read_text(errors="replace"))
            key = match.group(1) if match else None
        if (key is not None or not want_key) and port_open(port):
            return key
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not become ready in {timeout:.0f} s:\n" + tail(stderr_path))


def stop(proc: subprocess.Popen[bytes], name: str, grace: float = 10.0) -> None:
    """Terminate by PID, wait a bounded time, then kill."""
    if proc.poll() is not None:
        log(f"{name} (pid {proc.pid}) had already exited with status {proc.returncode}")
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) ignored SIGTERM for {grace:.0f} s: killing it")
        proc.kill()
        proc.wait(timeout=5)


def start_bigupload(workdir: Path, rate_limit: str | None, workers: int = 1) -> Server:
    exe = Path(sys.executable).parent / "bigupload"
    command = str(exe) if exe.exists() else shutil.which("bigupload")
    if command is None:
        raise RuntimeError("the `bigupload` command is not installed in this environment")
    port = free_port()
    data_dir = workdir / "data"
    stderr_path = workdir / "bigupload.stderr.log"
    proc = spawn(
        [command, "serve", "--port", str(port), "--workers", str(workers)],
        server_env(data_dir, rate_limit),
        workdir,
        stderr_path,
    )
    try:
        key = wait_ready(proc, "bigupload", port, stderr_path, want_key=True)
    except BaseException:
        stop(proc, "bigupload")
        raise
    headers = {"Authorization": f"Bearer {key}"}
    return Server("bigupload", "/api/v1/uploads", headers, port, proc, stderr_path)


def start_baseline(workdir: Path, workers: int = 1) -> Server:
    port = free_port()
    stderr_path = workdir / "baseline.stderr.log"
    proc = spawn(
        [
            sys.executable,
            str(BENCH_DIR / "baseline_app.py"),
            *("--host", HOST, "--port", str(port), "--workers", str(workers)),
        ],
        server_env(None),
        workdir,
        stderr_path,
    )
    try:
        wait_ready(proc, "baseline", port, stderr_path, want_key=False)
    except BaseException:
        stop(proc, "baseline")
        raise
    return Server("baseline", "/sign", {}, port, proc, stderr_path)


# --------------------------------------------------------------------------------------------
# Load generator
# --------------------------------------------------------------------------------------------


@dataclass
class Window:
    """The shared schedule of one level: warm-up until ``start_ns``, measure until ``end_ns``."""

    start_ns: int
    end_ns: int
    budget: int  # measured requests still allowed (the max-request bound)
    timeout: float  # per request, seconds


@dataclass
class Samples:
    latencies_ns: list[int] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    warmup_ok: int = 0
    warmup_failures: Counter[str] = field(default_factory=Counter)
    last_done_ns: int = 0


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; answer its status and whether the server will close the connection."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head[9:12])
    start = head.find(_CONTENT_LENGTH)
    if start < 0:
        raise ValueError("response without Content-Length")
    start += len(_CONTENT_LENGTH)
    length = int(head[start : head.index(b"\r\n", start)])
    if length:
        await reader.readexactly(length)
    return status, _CONNECTION_CLOSE in head


async def client(port: int, request: bytes, window: Window, samples: Samples) -> None:
    """One closed-loop client: send, wait for the answer, send again, until the window ends."""
    reader, writer = await asyncio.open_connection(HOST, port)
    reconnects = 0
    try:
        while True:
            sent = time.perf_counter_ns()
            if sent >= window.end_ns:
                break
            measured = sent >= window.start_ns
            if measured:
                if window.budget <= 0:
                    break
                window.budget -= 1
            failure: str | None = None
            close = False
            try:
                async with asyncio.timeout(window.timeout):
                    writer.write(request)
                    status, close = await read_response(reader)
                if not 200 <= status < 300:
                    failure = str(status)
            except TimeoutError:
                failure, close = "timeout", True
            except (OSError, EOFError, ValueError, asyncio.IncompleteReadError) as exc:
                failure, close = type(exc).__name__, True
            done = time.perf_counter_ns()
            if measured:
                samples.last_done_ns = max(samples.last_done_ns, done)
                if failure is None:
                    samples.latencies_ns.append(done - sent)
                else:
                    samples.failures[failure] += 1
            elif failure is None:
                samples.warmup_ok += 1
            else:
                samples.warmup_failures[failure] += 1
            if close:
                writer.close()
                while True:  # bounded by _MAX_RECONNECTS
                    reconnects += 1
                    if reconnects > _MAX_RECONNECTS:
                        samples.failures["gave_up_reconnecting"] += 1
                        return
                    try:
                        reader, writer = await asyncio.open_connection(HOST, port)
                        break
                    except OSError as exc:
                        samples.failures[f"connect:{type(exc).__name__}"] += 1
                        await asyncio.sleep(0.05)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1] / 1e6


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
    request = server.request_bytes()
    begin = time.perf_counter_ns()
    window = Window(
        start_ns=begin + int(warmup * 1e9),
        end_ns=begin + int((warmup + seconds) * 1e9),
        budget=max_requests,
        timeout=request_timeout,
    )
    samples = Samples()
    async with asyncio.timeout(warmup + seconds + request_timeout + 30):
        tasks = [
            asyncio.create_task(client(server.port, request, window, samples))
            for _ in range(clients)
        ]
        try:
            await asyncio.sleep(max(0.0, (window.start_ns - time.perf_counter_ns()) / 1e9))
            cpu0, own0, wall0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
            await asyncio.gather(*tasks)
            cpu1, own1, wall1 = server.cpu_seconds(), time.process_time(), time.perf_counter()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    latencies = sorted(samples.latencies_ns)
    ok, errors = len(latencies), sum(samples.failures.values())
    elapsed = max(samples.last_done_ns - window.start_ns, 1) / 1e9
    wall = max(wall1 - wall0, 1e-9)
    server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return RunResult(
        target=server.name,
        clients=clients,
        round=round_no,
        window_s=round(elapsed, 3),
        ok=ok,
        errors=errors,
        failures=dict(samples.failures),
        warmup_ok=samples.warmup_ok,
        warmup_errors=sum(samples.warmup_failures.values()),
        rps=ok / elapsed if ok else 0.0,
        p50_ms=percentile(latencies, 0.50),
        p90_ms=percentile(latencies, 0.90),
        p99_ms=percentile(latencies, 0.99),
        max_ms=latencies[-1] / 1e6 if latencies else math.nan,
        server_cpu_pct=None if server_cpu is None else 100 * server_cpu / wall,
        server_cpu_ms_per_req=None if server_cpu is None or not ok else 1000 * server_cpu / ok,
        client_cpu_pct=100 * (own1 - own0) / wall,
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


def loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """uvloop when available: the load generator must stay cheap on CPU."""
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


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
