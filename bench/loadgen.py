"""A closed-loop HTTP/1.1 load generator on raw asyncio streams, for the benchmarks in ``bench/``.

Each client holds one keep-alive connection and sends pre-encoded request bytes, then the next
request as soon as the previous answer is read (only the status line and ``Content-Length`` are
parsed). A run is a warm-up followed by a measured window, shared by all clients; the latency of
every measured request is taken with ``time.perf_counter_ns()`` from just before the write to the
end of the body. A dropped connection is reopened (a bounded number of times) and counted.

    request = encode_request(HOST, port, "POST", "/path", {"Content-Type": "..."}, body)
    result = await run_load(HOST, port, request, clients=16, warmup=1.0, seconds=5.0)

``loop_factory()`` answers uvloop when it is installed: the generator must stay cheap on CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

_CONTENT_LENGTH = b"\r\ncontent-length:"
_CONNECTION_CLOSE = b"\r\nconnection: close"
#: How often one client may reconnect after a dropped connection before it gives up.
_MAX_RECONNECTS = 50


def encode_request(
    host: str, port: int, method: str, path: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """One HTTP/1.1 request, ready to be written as is.

    The headers go out in the given order, after ``Host``; ``Content-Length`` is appended unless
    ``headers`` already places it.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += (f"{name}: {value}" for name, value in headers.items())
    if not any(name.lower() == "content-length" for name in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Window:
    """The shared schedule of one run: warm-up until ``start_ns``, measure until ``end_ns``."""

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


async def client(host: str, port: int, request: bytes, window: Window, samples: Samples) -> None:
    """One closed-loop client: send, wait for the answer, send again, until the window ends."""
    reader, writer = await asyncio.open_connection(host, port)
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
                        reader, writer = await asyncio.open_connection(host, port)
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
class LoadResult:
    """What one run measured. ``probe_delta`` is the change of the ``probe`` over the window."""

    latencies_ns: list[int]  # sorted, 2xx answers of the measured window only
    failures: Counter[str]
    warmup_ok: int
    warmup_failures: Counter[str]
    elapsed_s: float  # from the window's start to the last measured answer
    wall_s: float  # wall-clock time between the two probe samples
    client_cpu_s: float  # this process's CPU time over the same span
    probe_delta: float | None

    @property
    def ok(self) -> int:
        return len(self.latencies_ns)

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    @property
    def warmup_errors(self) -> int:
        return sum(self.warmup_failures.values())

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed_s if self.ok else 0.0

    @property
    def max_ms(self) -> float:
        return self.latencies_ns[-1] / 1e6 if self.latencies_ns else math.nan

    def percentile_ms(self, q: float) -> float:
        return percentile(self.latencies_ns, q)


async def run_load(
    host: str,
    port: int,
    request: bytes,
    clients: int,
    *,
    warmup: float,
    seconds: float,
    max_requests: int,
    request_timeout: float,
    probe: Callable[[], float | None] | None = None,
) -> LoadResult:
    """Drive ``clients`` closed-loop clients through a warm-up, then a measured window.

    ``probe`` (such as the server's CPU seconds) is sampled when the window starts and when the
    last client is done, next to this process's CPU time and the wall clock.
    """
    begin = time.perf_counter_ns()
    window = Window(
        start_ns=begin + int(warmup * 1e9),
        end_ns=begin + int((warmup + seconds) * 1e9),
        budget=max_requests,
        timeout=request_timeout,
    )
    samples = Samples()
    sample = probe if probe is not None else (lambda: None)
    async with asyncio.timeout(warmup + seconds + request_timeout + 30):
        tasks = [
            asyncio.create_task(client(host, port, request, window, samples))
            for _ in range(clients)
        ]
        try:
            await asyncio.sleep(max(0.0, (window.start_ns - time.perf_counter_ns()) / 1e9))
            probe0, own0, wall0 = sample(), time.process_time(), time.perf_counter()
            await asyncio.gather(*tasks)
            probe1, own1, wall1 = sample(), time.process_time(), time.perf_counter()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return LoadResult(
        latencies_ns=sorted(samples.latencies_ns),
        failures=samples.failures,
        warmup_ok=samples.warmup_ok,
        warmup_failures=samples.warmup_failures,
        elapsed_s=max(samples.last_done_ns - window.start_ns, 1) / 1e9,
        wall_s=max(wall1 - wall0, 1e-9),
        client_cpu_s=own1 - own0,
        probe_delta=None if probe0 is None or probe1 is None else probe1 - probe0,
    )


def loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """uvloop when available: the load generator must stay cheap on CPU."""
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"
