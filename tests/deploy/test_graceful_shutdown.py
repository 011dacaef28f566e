"""SIGTERM to the container's first process (tini, then ``bigupload serve``) in the middle of a
steady load: every request sent before the signal gets its answer, none answers 5xx, the open
event stream ends, an upload whose body is half sent at the signal is received whole, the
server exits 0, and no job runs twice or is left leased.

Each of a bounded number of clients records an upload (``POST /api/v1/uploads``) and sends its
bytes to the local store, which confirms it and queues a processing job, so jobs are running
when the signal comes. After the signal a client may find the port closed (connection refused,
or a kept-alive connection closed by the server before it read the request): that is how a
stopping server says no, and the client stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.deploy import recipes
from tests.deploy.processes import WAIT, Process
from tests.support.net import free_port

CLIENTS = 6
MAX_ROUNDS = 400  # per client: the load is bounded in count as well as in time
BEFORE_SIGNAL = 60  # uploads made before the signal is sent
SIZE = 4096
SLOW_SIZE = 8 * 1024 * 1024


@dataclass
class Outcome:
    sent_at: float
    what: str
    status: int | None = None
    error: str | None = None


@dataclass
class Load:
    base_url: str
    api_key: str
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    signalled_at: float | None = None
    made: int = 0

    def record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)
            if outcome.what == "create" and outcome.status == 201:
                self.made += 1

    def call(self, http: httpx.Client, what: str, method: str, url: str, **kw: Any) -> Any:
        outcome = Outcome(time.monotonic(), what)
        try:
            response = http.request(method, url, **kw)
        except httpx.TransportError as exc:
            outcome.error = type(exc).__name__
            self.record(outcome)
            return None
        outcome.status = response.status_code
        self.record(outcome)
        return response

    def client(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(base_url=self.base_url, timeout=WAIT, trust_env=False) as http:
            for _ in range(MAX_ROUNDS):
                body = os.urandom(SIZE)
                created = self.call(
                    http,
                    "create",
                    "POST",
                    "/api/v1/uploads",
                    headers=headers,
                    json={
                        "filename": "load.bin",
                        "content_type": "application/octet-stream",
                        "size": SIZE,
                        "checksum_sha256": hashlib.sha256(body).hexdigest(),
                    },
                )
                if created is None or created.status_code != 201:
                    return
                ticket = created.json()
                sent = self.call(
                    http, "put", "PUT", ticket["url"], headers=ticket["headers"], content=body
                )
                if sent is None or sent.status_code >= 300:
                    return


@dataclass
class SlowUpload:
    """One bigger upload whose body is half sent when the signal comes, the rest after it."""

    base_url: str
    api_key: str
    halfway: threading.Event = field(default_factory=threading.Event)
    signalled: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] = field(default_factory=dict)

    def body(self, data: bytes) -> Iterator[bytes]:
        half = len(data) // 2
        yield data[:half]
        self.halfway.set()
        self.signalled.wait(WAIT)
        yield data[half:]

    def run(self) -> None:
        data = os.urandom(SLOW_SIZE)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(base_url=self.base_url, timeout=WAIT, trust_env=False) as http:
            ticket = http.post(
                "/api/v1/uploads",
                headers=headers,
                json={
                    "filename": "slow.bin",
                    "content_type": "application/octet-stream",
                    "size": len(data),
                    "checksum_sha256": hashlib.sha256(data).hexdigest(),
                },
            ).json()
            self.result["id"] = ticket["id"]
            try:
                sent = http.put(
                    ticket["url"],
                    headers=ticket["headers"] | {"Content-Length": str(len(data))},
                    content=self.body(data),
                )
            except httpx.TransportError as exc:
                self.result["error"] = type(exc).__name__
                return
            self.result["status"] = sent.status_code


def stream_events(base_url: str, api_key: str, result: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        with (
            httpx.Client(base_url=base_url, timeout=WAIT, trust_env=False) as http,
            http.stream("GET", "/api/v1/events", headers=headers) as response,
        ):
            result["status"] = response.status_code
            result["lines"] = sum(1 for _ in response.iter_lines())
        result["ended"] = "cleanly"
    except httpx.HTTPError as exc:
        result["ended"] = type(exc).__name__


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], str]]:
    """The settings that name the registry, and its URL."""
    if request.param == "sqlite":
        yield {}, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'bigupload.db'}"
        return
    with request.getfixturevalue("postgres_server").temporary_database() as url:
        yield {"BIGUPLOAD_DATABASE_URL": url}, url


def job_rows(url: str) -> list[tuple[int, str, int]]:
    async def read() -> list[tuple[int, str, int]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("SELECT id, status, attempts FROM jobs ORDER BY id")
                )
                return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def file_status(url: str, file_id: str) -> str:
    async def read() -> str:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                rows = (await connection.execute(text("SELECT id, status FROM files"))).all()
        finally:
            await engine.dispose()
        found = {str(row[0]).replace("-", ""): str(row[1]) for row in rows}
        return found[file_id.replace("-", "")]

    return asyncio.run(read())


def test_sigterm_mid_load_fails_no_request_and_runs_no_job_twice(
    tmp_path: Path, database: tuple[dict[str, str], str]
) -> None:
    settings, read_url = database
    image = recipes.image()
    port = free_port()
    env = recipes.process_env(
        image.env,
        BIGUPLOAD_DATA_DIR=str(tmp_path / "data"),
        BIGUPLOAD_HOST="127.0.0.1",  # loopback only on this machine (the image binds 0.0.0.0)
        BIGUPLOAD_PORT=str(port),
        BIGUPLOAD_RATE_LIMIT="off",
        **settings,
    )
    base_url = f"http://127.0.0.1:{port}"
    server = Process(recipes.local_argv([*image.entrypoint, *image.cmd]), env, tmp_path / "cwd")
    try:
        api_key = server.line_after("It is shown only once")
        server.wait_until_answering(f"{base_url}/health")
        load = Load(base_url, api_key)
        events: dict[str, Any] = {}
        streamer = threading.Thread(target=stream_events, args=(base_url, api_key, events))
        streamer.start()
        clients = [threading.Thread(target=load.client) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + WAIT
        while load.made < BEFORE_SIGNAL and time.monotonic() < deadline:
            if not any(client.is_alive() for client in clients):
                break
            time.sleep(0.01)
        assert load.made >= BEFORE_SIGNAL, server.output
        slow = SlowUpload(base_url, api_key)
        uploader = threading.Thread(target=slow.run)
        uploader.start()
        assert slow.halfway.wait(WAIT), server.output
        load.signalled_at = time.monotonic()
        server.terminate()  # to tini, which passes it on to bigupload
        slow.signalled.set()
        code = server.wait()
        for thread in [*clients, streamer, uploader]:
            thread.join(WAIT)
    finally:
        server.stop()

    assert code == 0, server.output
    signalled = load.signalled_at
    before = [o for o in load.outcomes if o.sent_at < signalled]
    after = [o for o in load.outcomes if o.sent_at >= signalled]
    failed_before = [o for o in before if o.error is not None or (o.status or 0) >= 300]
    assert failed_before == [], server.output
    assert [o for o in after if o.status is not None and o.status >= 500] == []
    # After the signal: answers, or the closed port, never a broken answer.
    refused = {o.error for o in after if o.error is not None}
    assert refused <= {"ConnectError", "RemoteProtocolError", "ReadError"}, refused
    assert events == {"status": 200, "lines": events.get("lines"), "ended": "cleanly"}

    # The upload half sent at the signal was received whole, and confirmed.
    assert slow.result.get("status") == 200, (slow.result, server.output)
    assert file_status(read_url, slow.result["id"]) in ("uploaded", "processing", "completed")

    jobs = job_rows(read_url)
    assert jobs, "the load queued no job"
    assert [job for job in jobs if job[2] > 1] == []  # no job ran twice
    assert [job for job in jobs if job[1] == "running"] == []  # none left leased
    print(
        f"{len(before)} requests before SIGTERM, {len(after)} after "
        f"({sorted(refused)}); jobs: {len(jobs)}, "
        f"{sum(1 for j in jobs if j[1] == 'done')} done"
    )
