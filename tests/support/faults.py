"""A loopback HTTP/1.1 proxy that records every request and injects faults, deterministically.

It sits in front of one upstream server (bigupload, whose local store is then reached through
it too when the service's public URL is the proxy's, or an S3 server). For each request a
:class:`FaultPlan` decides, from the request's *identity* (method and path with ids blanked,
or "PUT part <n>" for a part) and its attempt number, whether to:

- ``"503"`` / ``"429"``: take the body, answer that status with ``Retry-After``;
- ``"drop"``: take half the body, then reset the connection (nothing reaches upstream);
- ``"drop_after"``: pass the whole request upstream, take its answer, then reset the
  connection (the request took effect; its answer is lost);
- ``"corrupt"``: pass the request upstream with one body byte flipped.

Identities do not depend on ids or timing, so a seeded plan injects the same faults into the
same parts on every run, whatever order the parts are sent in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

FAULTS = ("503", "429", "drop", "drop_after", "corrupt")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CHUNK = 256 * 1024


@dataclass
class Record:
    """One request the proxy saw."""

    method: str
    path: str
    query: dict[str, list[str]]
    identity: str
    attempt: int
    fault: str | None
    status: int | None = None
    error_code: str | None = None

    @property
    def is_part(self) -> bool:
        return self.method == "PUT" and "partNumber" in self.query

    @property
    def part_number(self) -> int | None:
        return int(self.query["partNumber"][0]) if "partNumber" in self.query else None


def identity(method: str, path: str, query: dict[str, list[str]]) -> str:
    if "partNumber" in query:
        return f"{method} part {query['partNumber'][0]}"
    if path.startswith("/store/"):
        return f"{method} object"
    return f"{method} {_UUID_RE.sub('{id}', path)}"


@dataclass
class FaultPlan:
    """Which fault, if any, request ``identity``'s attempt ``attempt`` (0-based) gets.

    ``explicit`` maps identities to the faults of their first attempts; otherwise requests
    that ``match`` get a fault from ``kinds`` with probability ``share``, drawn from a
    generator seeded with the seed, identity and attempt, on at most ``max_per_request`` of
    their attempts.
    """

    seed: int = 0
    share: float = 0.0
    kinds: tuple[str, ...] = ("503",)
    match: Callable[[str], bool] = lambda ident: ident.startswith("PUT part")
    max_per_request: int = 2
    explicit: dict[str, list[str]] = field(default_factory=dict)
    retry_after: str = "1"

    def decide(self, ident: str, attempt: int) -> str | None:
        if ident in self.explicit:
            faults = self.explicit[ident]
            return faults[attempt] if attempt < len(faults) else None
        if not self.share or attempt >= self.max_per_request or not self.match(ident):
            return None
        rng = random.Random(f"{self.seed}:{ident}:{attempt}")
        return rng.choice(self.kinds) if rng.random() < self.share else None


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        port: int,
        plan: FaultPlan | None = None,
        rate: float | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        #: Bytes per second each request body is relayed at, at most (``None``: at once): a
        #: ceiling on an upload's speed, so that it is still running when a test stops it.
        self.rate = rate
        #: Clients reach the proxy over TLS with this server context (``https://``).
        self.tls = tls
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.port = port
        self.plan = plan or FaultPlan()
        #: Called with each record once its answer is known (or it was faulted), in the
        #: proxy's thread, before the answer is relayed.
        self.on_response: Callable[[Record], None] | None = None
        self.records: list[Record] = []
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- life -------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.tls), self._loop
        )
        self._server = future.result(timeout=10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it saw ------------------------------------------------------------------------

    def snapshot(self) -> list[Record]:
        with self._lock:
            return list(self.records)

    def parts_sent(self, since: int = 0) -> list[Record]:
        """Part PUTs (from record ``since`` on)."""
        return [r for r in self.snapshot()[since:] if r.is_part]

    def faults(self) -> list[Record]:
        return [r for r in self.snapshot() if r.fault]

    # -- serving ----------------------------------------------------------------------------

    def _record(self, method: str, target: str) -> Record:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        ident = identity(method, parts.path, query)
        with self._lock:
            attempt = self._attempts.get(ident, 0)
            self._attempts[ident] = attempt + 1
            record = Record(method, parts.path, query, ident, attempt, None)
            record.fault = self.plan.decide(ident, attempt)
            self.records.append(record)
        return record

    def _answered(self, record: Record, status: int | None, body: bytes = b"") -> None:
        record.status = status
        if body[:1] == b"{":
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                record.error_code = json.loads(body)["error"]["code"]
        if self.on_response is not None:
            self.on_response(record)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the client's connection stays open."""
        head = await _read_head(reader)
        if head is None:
            return False
        method, target, headers = _parse_request(head)
        length = int(headers.get("content-length", "0"))
        record = self._record(method, target)
        fault = record.fault
        if fault in ("503", "429"):
            await _skip(reader, length)
            status = int(fault)
            body = json.dumps(
                {"error": {"code": f"injected_{fault}", "message": "injected fault"}}
            ).encode()
            self._answered(record, status, body)
            writer.write(_response(status, body, self.plan.retry_after))
            await writer.drain()
            return True
        if fault == "drop":
            await _skip(reader, length // 2)
            self._answered(record, None)
            _reset(writer)
            return False
        # A connection upstream per request: never one the upstream closed while idle.
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            up_writer.write(head)
            await _pipe_body(reader, up_writer, length, corrupt=fault == "corrupt", rate=self.rate)
            status, response_head, keep = await _read_response_head(up_reader)
            if fault == "drop_after":
                await _relay_body(up_reader, None, response_head, method)
                self._answered(record, status)
                _reset(writer)
                return False
            if status >= 400:
                # Error bodies are small: take them whole, to learn their code first.
                body = bytearray()
                await _relay_body(up_reader, body, response_head, method)
                self._answered(record, status, bytes(body))
                writer.write(response_head + bytes(body))
            else:
                self._answered(record, status)
                writer.write(response_head)
                await _relay_body(up_reader, writer, response_head, method)
            await writer.drain()
            return keep
        finally:
            with contextlib.suppress(Exception):
                up_writer.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None


def _parse_request(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ConnectionError("chunked request bodies are not supported by this proxy")
    return method, target, headers


async def _skip(reader: asyncio.StreamReader, length: int) -> None:
    while length > 0:
        chunk = await reader.read(min(_CHUNK, length))
        if not chunk:
            raise ConnectionError("client went away")
        length -= len(chunk)


async def _pipe_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    length: int,
    corrupt: bool,
    rate: float | None = None,
) -> None:
    first = True
    started, sent = time.monotonic(), 0
    while length > 0:
        chunk = await reader.read(min(_CHUNK, length))
        if not chunk:
            raise ConnectionError("client went away")
        length -= len(chunk)
        if corrupt and first:
            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        first = False
        writer.write(chunk)
        await writer.drain()
        sent += len(chunk)
        if rate:
            await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    status = int(status_line.split(" ", 2)[1])
    keep = b"connection: close" not in head.lower()
    return status, head, keep


async def _relay_body(
    reader: asyncio.StreamReader,
    sink: asyncio.StreamWriter | bytearray | None,
    head: bytes,
    method: str,
) -> None:
    """Copy the response body that ``head`` announces from ``reader`` to ``sink``."""
    lower = head.lower()
    status = int(head.split(b" ", 2)[1])

    async def emit(data: bytes) -> None:
        if isinstance(sink, bytearray):
            sink.extend(data)
        elif sink is not None:
            sink.write(data)
            await sink.drain()

    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
    if match:
        remaining = int(match.group(1))
        while remaining > 0:
            chunk = await reader.read(min(_CHUNK, remaining))
            if not chunk:
                raise ConnectionError("upstream went away")
            remaining -= len(chunk)
            await emit(chunk)
        return
    if b"transfer-encoding: chunked" in lower:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            await emit(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            data = await reader.readexactly(size + 2)
            await emit(data)
            if size == 0:
                return
    while chunk := await reader.read(_CHUNK):  # until the upstream closes
        await emit(chunk)


def _response(status: int, body: bytes, retry_after: str) -> bytes:
    reason = {503: "Service Unavailable", 429: "Too Many Requests"}[status]
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Retry-After: {retry_after}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST, as a crashed peer or a broken network does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
