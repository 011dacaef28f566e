"""A scripted flow against real ``bigupload serve`` processes, then exact figures from a scrape:
one PUT, an upload in parts, a failed checksum, an expired upload, a 429; with one process and
with ``--workers 2`` (every figure is then the sum of both processes'). And a
``bigupload worker`` answering scrapes on its own port.

Nothing is timed: the test waits (bounded) for the figures the background work must reach.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.cli.helpers import BIGUPLOAD, Server, clean_env
from tests.conftest import SECRET
from tests.support.net import free_port
from tests.support.scrape import Scrape
from tests.support.service import prepare_registry

MiB = 1024 * 1024
WAIT = 60  # an upper bound against hanging, never a measure of speed
TOKEN = "served-metrics-token-0123"
LIMIT = 40  # requests a minute per owner and process


@dataclass
class Deployment:
    server: Server
    data_dir: Path
    keys: dict[str, str]
    workers: int = 1

    def api(self, owner: str = "owner") -> httpx.Client:
        return httpx.Client(
            base_url=self.server.base_url,
            headers={"Authorization": f"Bearer {self.keys[owner]}"},
            timeout=30,
            trust_env=False,
        )

    def scrape(self) -> Scrape:
        with httpx.Client(base_url=self.server.base_url, timeout=30, trust_env=False) as http:
            response = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        return Scrape.parse(response.text)


def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def registry(data_dir: Path) -> list[str]:
    url = f"sqlite+aiosqlite:///{data_dir / 'bigupload.db'}"
    data_dir.mkdir(parents=True)
    return [asyncio.run(prepare_registry(url, owner)) for owner in ("owner", "limited")]


ENV = {
    "BIGUPLOAD_SECRET_KEY": SECRET,
    "BIGUPLOAD_RATE_LIMIT": f"{LIMIT}/minute",
    "BIGUPLOAD_METRICS_TOKEN": TOKEN,
    "BIGUPLOAD_LOCAL_STORAGE_EVENTS": "false",  # completes alone confirm: figures are exact
    "BIGUPLOAD_SWEEP_INTERVAL_SECONDS": "1",
    "BIGUPLOAD_JOB_POLL_INTERVAL": "0.05",
}


@pytest.fixture(params=[1, 2], ids=["one-process", "workers-2"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    data_dir = tmp_path / "data"
    owner, limited = registry(data_dir)
    port = free_port()
    stale = metrics_dir(data_dir, port) / "counter_999999.db"  # a previous run's: cleaned
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over")
    server = Server(data_dir, port, args=("--workers", str(request.param)), **ENV)
    try:
        server.wait_until_answering()
        assert not stale.exists()
        yield Deployment(server, data_dir, {"owner": owner, "limited": limited}, request.param)
    finally:
        server.stop()


def create(api: httpx.Client, body: bytes, **extra: Any) -> dict[str, Any]:
    request = {
        "filename": "f.bin",
        "content_type": "application/octet-stream",
        "size": len(body),
        "checksum_sha256": hashlib.sha256(body).hexdigest(),
        **extra,
    }
    response = api.post("/api/v1/uploads", json=request)
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


def put(url: str, body: bytes, headers: dict[str, str]) -> None:
    with httpx.Client(timeout=30, trust_env=False) as http:
        response = http.put(url, content=body, headers=headers)
    assert response.status_code == 200, response.text


def send_parts(api: httpx.Client, ticket: dict[str, Any], body: bytes) -> None:
    numbers = list(range(1, ticket["part_count"] + 1))
    signed = api.post(f"/api/v1/uploads/{ticket['id']}/parts", json={"part_numbers": numbers})
    assert signed.status_code == 200, signed.text
    size = ticket["part_size"]
    for part in signed.json()["parts"]:
        start = (part["part_number"] - 1) * size
        put(part["url"], body[start : start + size], part["headers"])


def complete(api: httpx.Client, ticket: dict[str, Any]) -> httpx.Response:
    return api.post(f"/api/v1/uploads/{ticket['id']}/complete")


def backdate(data_dir: Path, file_id: str) -> None:
    """Make a pending upload older than PENDING_EXPIRY_SECONDS, so the next sweep expires it."""
    with sqlite3.connect(data_dir / "bigupload.db", timeout=30) as db:
        changed = db.execute(
            "UPDATE files SET created_at = datetime(created_at, '-30 days') WHERE id = ?",
            (file_id.replace("-", ""),),
        ).rowcount
    assert changed == 1


def metrics_dir(data_dir: Path, port: int) -> Path:
    return data_dir / "metrics" / f"serve-{port}"


def health_answered_by(data_dir: Path, port: int) -> dict[int, float]:
    """``GET /health`` answers counted in each process's own file (not through a scrape)."""
    counted = {}
    for path in metrics_dir(data_dir, port).glob("counter_*.db"):
        families = MultiProcessCollector.merge([str(path)])
        counted[int(path.stem.rsplit("_", 1)[1])] = sum(
            sample.value
            for family in families
            for sample in family.samples
            if sample.name == "bigupload_http_requests_total"
            and sample.labels.get("route") == "/health"
        )
    return {pid: count for pid, count in counted.items() if count}


def until_every_process_answered(deployment: Deployment) -> int:
    """Ask ``/health`` on new connections until each serving process has answered one;
    answer how many were asked."""
    asked = 0
    while len(health_answered_by(deployment.data_dir, deployment.server.port)) < deployment.workers:
        assert asked < 500, health_answered_by(deployment.data_dir, deployment.server.port)
        with httpx.Client(base_url=deployment.server.base_url, trust_env=False) as http:
            assert http.get("/health").status_code == 200
        asked += 1
    return asked


def test_open_event_streams_are_counted_while_open(deployment: Deployment) -> None:
    # A plain socket: the stream stays open exactly as long as the test holds it.
    with socket.create_connection(("127.0.0.1", deployment.server.port), timeout=WAIT) as sock:
        sock.sendall(
            b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            + f"Authorization: Bearer {deployment.keys['owner']}\r\n\r\n".encode()
        )
        received = b""
        while b"\n\n" not in received.partition(b"\r\n\r\n")[2]:  # the opening frame
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received
        assert deployment.scrape().value("bigupload_sse_streams_open") == 1
    eventually(
        lambda: deployment.scrape().value("bigupload_sse_streams_open") == 0,
        "the stream's end to be noticed",
    )


def test_a_scripted_flow_gives_exact_figures(deployment: Deployment) -> None:
    health = 1 + until_every_process_answered(deployment)  # wait_until_answering's one
    rng = random.Random(13)
    single = rng.randbytes(3000)
    parts = rng.randbytes(5 * MiB + 1000)
    with deployment.api() as api:
        ticket = create(api, single, multipart=False)
        put(ticket["url"], single, ticket["headers"])
        assert complete(api, ticket).status_code == 200

        ticket = create(api, parts, multipart=True, part_size=5 * MiB)
        send_parts(api, ticket, parts)
        assert complete(api, ticket).status_code == 200

        declared = rng.randbytes(1000)
        ticket = create(api, declared, multipart=True, part_size=5 * MiB)
        send_parts(api, ticket, rng.randbytes(1000))  # other bytes than declared
        refused = complete(api, ticket)
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "checksum_mismatch"

        forgotten = create(api, rng.randbytes(100), multipart=False)
        backdate(deployment.data_dir, forgotten["id"])
        assert (
            api.get("/api/v1/files", headers={"Authorization": "Bearer bu_nosuchkey"}).status_code
            == 401
        )

    with deployment.api("limited") as limited:
        statuses = []
        while 429 not in statuses:
            assert len(statuses) <= 2 * LIMIT, statuses
            statuses.append(limited.get("/api/v1/files").status_code)

    final = eventually(
        lambda: (
            (found := deployment.scrape()).value("bigupload_files_total", status="completed") == 2
            and found.value("bigupload_files_total", status="expired") == 1
            and found.value("bigupload_jobs_due") == 0
            and found.value("bigupload_jobs_running") == 0
            and found
        ),
        "both files processed and the forgotten one expired",
    )
    files = final.counts("bigupload_files_total", "status", "reason")
    assert files == {
        ("uploaded", ""): 2,
        ("processing", ""): 2,
        ("completed", ""): 2,
        ("failed", "checksum_mismatch"): 1,
        ("expired", ""): 1,
    }
    assert final.value("bigupload_bytes_confirmed_total") == len(single) + len(parts)
    assert final.counts("bigupload_upload_tickets_total", "kind") == {
        ("put",): 2,
        ("multipart",): 2,
    }
    assert final.value("bigupload_part_urls_signed_total") == 3
    assert final.value("bigupload_signing_duration_seconds_count", kind="parts") == 2
    assert final.value("bigupload_signing_duration_seconds_count", kind="put") == 2

    requests = final.counts("bigupload_http_requests_total", "route", "method", "status")
    assert requests[("/api/v1/uploads", "POST", "201")] == 4
    assert requests[("/api/v1/uploads/{file_id}/parts", "POST", "200")] == 2
    assert requests[("/api/v1/uploads/{file_id}/complete", "POST", "200")] == 2
    assert requests[("/api/v1/uploads/{file_id}/complete", "POST", "422")] == 1
    assert requests[("/store/{key:path}", "PUT", "200")] == 4
    assert requests[("/api/v1/files", "GET", "429")] == 1
    assert requests[("/api/v1/files", "GET", "200")] == len(statuses) - 1
    assert requests[("/api/v1/files", "GET", "401")] == 1
    assert not any(route.startswith("/metrics") for route, _, _ in requests)
    # Counted by several processes, each in its own file; a scrape answers their sum.
    assert (
        len(health_answered_by(deployment.data_dir, deployment.server.port)) == deployment.workers
    )
    assert requests[("/health", "GET", "200")] == health
    assert (
        final.value(
            "bigupload_http_request_duration_seconds_count", route="/api/v1/uploads", method="POST"
        )
        == 4
    )

    assert final.counts("bigupload_rate_limited_total", "limiter") == {("owner",): 1}
    assert final.counts("bigupload_auth_failures_total", "reason") == {("invalid_api_key",): 1}
    assert (
        final.value("bigupload_store_calls_total", operation="create_multipart", outcome="ok") == 2
    )
    assert (
        final.value("bigupload_store_calls_total", operation="complete_multipart", outcome="ok")
        == 2
    )
    assert (
        final.value("bigupload_store_call_duration_seconds_count", operation="create_multipart")
        == 2
    )
    assert final.value("bigupload_job_attempts_total", kind="process", outcome="done") == 2
    assert final.value("bigupload_job_give_ups_total") == 0
    assert final.value("bigupload_store_unreachable_answers_total") == 0
    assert final.value("bigupload_sse_streams_open") == 0


def test_a_worker_answers_scrapes_on_its_own_port(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    owner, _ = registry(data_dir)
    env = {**ENV, "BIGUPLOAD_RUN_JOBS": "false"}
    server = Server(data_dir, free_port(), **env)
    metrics_port = free_port()
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [str(BIGUPLOAD), "worker", "--metrics-port", str(metrics_port)],
            env=clean_env(data_dir, **env),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        server.wait_until_answering()
        deployment = Deployment(server, data_dir, {"owner": owner})
        body = random.Random(5).randbytes(2000)
        with deployment.api() as api:
            ticket = create(api, body, multipart=False)
            put(ticket["url"], body, ticket["headers"])
            assert complete(api, ticket).status_code == 200
        url = f"http://127.0.0.1:{metrics_port}/metrics"

        def worker_scrape() -> Scrape | None:
            try:
                response = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
            except httpx.TransportError:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()
                return None
            assert response.status_code == 200, response.text
            return Scrape.parse(response.text)

        found = eventually(
            lambda: (
                (s := worker_scrape()) is not None
                and s.value("bigupload_files_total", status="completed") == 1
                and s
            ),
            "the worker to process the file",
        )
        assert found.value("bigupload_job_attempts_total", kind="process", outcome="done") == 1
        refused = httpx.get(url)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        served = deployment.scrape()
        assert served.counts("bigupload_files_total", "status") == {("uploaded",): 1}
        assert served.value("bigupload_job_attempts_total") == 0
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(15)
        server.stop()
