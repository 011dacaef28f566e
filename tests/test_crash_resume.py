"""``bigupload upload`` killed with SIGKILL at random moments, then run again: the file arrives
intact, once. Also: the server killed and restarted in the middle of an upload.

Everything is real: ``bigupload serve`` and ``bigupload upload`` are processes, the store is the
local adapter or moto over HTTP. The part bytes go through a loopback proxy that relays each
body at most :data:`RATE` bytes a second: a ceiling on speed, so that a run is always still
sending when the test kills it (never a measure of speed; nothing here is timed). Kill moments
come from a seeded generator; all but the first wait until this run has stored a part, so
every run makes progress and the final run must resume, not restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.helpers import BIGUPLOAD, Server, clean_env
from tests.conftest import SECRET, make_bucket
from tests.support.faults import FaultProxy
from tests.support.moto import s3_client
from tests.support.net import free_port
from tests.support.service import prepare_registry

MiB = 1024 * 1024
SIZE = 256 * MiB
PART = 5 * MiB
PARTS = -(-SIZE // PART)
RATE = 10 * MiB  # per part upload; 4 at once
CONCURRENCY = 4
KILLS = 5
WAIT = 120  # an upper bound against hanging, never a measure of speed


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("crash") / "disk.img"
    digest = hashlib.sha256()
    rng = random.Random(256)
    with path.open("wb") as handle:
        for _ in range(SIZE // (8 * MiB)):
            chunk = rng.randbytes(8 * MiB)
            digest.update(chunk)
            handle.write(chunk)
    return path, digest.hexdigest()


@dataclass
class Deployment:
    """A ``bigupload serve`` process, the throttling proxy its part uploads go through, a key."""

    data_dir: Path
    port: int
    env: dict[str, str]
    proxy: FaultProxy
    client_url: str
    api_key: str
    cache_dir: Path
    server: Server

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30, trust_env=False)

    def restart(self) -> None:
        self.server = Server(self.data_dir, self.port, **self.env)
        self.server.wait_until_answering()

    def upload(self, path: Path, log: Path) -> subprocess.Popen[bytes]:
        """``bigupload upload path`` in its own process; output to ``log`` (never a pipe that
        could fill and stall it)."""
        env = clean_env(
            self.data_dir.parent / "client",
            BIGUPLOAD_URL=self.client_url,
            BIGUPLOAD_API_KEY=self.api_key,
            BIGUPLOAD_CACHE_DIR=str(self.cache_dir),
        )
        with log.open("ab") as out:
            return subprocess.Popen(
                [str(BIGUPLOAD), "upload", str(path), "--concurrency", str(CONCURRENCY)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    def parts_stored_since(self, mark: int) -> int:
        return sum(1 for r in self.proxy.snapshot()[mark:] if r.is_part and r.status == 200)


@pytest.fixture(params=["local", "s3-moto"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    port, proxy_port = free_port(), free_port()
    data_dir = tmp_path / "server"
    env = {
        "BIGUPLOAD_SECRET_KEY": SECRET,
        "BIGUPLOAD_RATE_LIMIT": "off",
        "BIGUPLOAD_MULTIPART_THRESHOLD": "8MiB",
        "BIGUPLOAD_PART_SIZE": "5MiB",
    }
    if request.param == "local":
        upstream = f"http://127.0.0.1:{port}"
        env["BIGUPLOAD_PUBLIC_URL"] = f"http://127.0.0.1:{proxy_port}"
        client_url = f"http://127.0.0.1:{proxy_port}"
    else:
        moto = request.getfixturevalue("moto_server")
        upstream = moto.endpoint_url
        env |= {
            "BIGUPLOAD_STORAGE": "s3",
            "BIGUPLOAD_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy_port}",
            "BIGUPLOAD_S3_BUCKET": make_bucket(s3_client(moto.endpoint_url)),
            "BIGUPLOAD_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
        client_url = f"http://127.0.0.1:{port}"
    data_dir.mkdir(parents=True)
    api_key = asyncio.run(
        prepare_registry(f"sqlite+aiosqlite:///{data_dir / 'bigupload.db'}", "crash")
    )
    with FaultProxy(upstream, proxy_port, rate=RATE) as proxy:
        server = Server(data_dir, port, **env)
        deployment = Deployment(
            data_dir, port, env, proxy, client_url, api_key, tmp_path / "cache", server
        )
        try:
            server.wait_until_answering()
            yield deployment
        finally:
            deployment.server.stop()


def wait_until(condition: Any, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``condition()`` while ``process`` runs; fail if it ends first or never comes."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the upload ended (exit {process.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the upload never got there:\n{log.read_text()}")
        time.sleep(0.01)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(WAIT) == -signal.SIGKILL  # killed mid-way, not finished


def finish(process: subprocess.Popen[bytes], log: Path) -> str:
    """Wait for a run to end by itself; answer the file id it printed."""
    try:
        code = process.wait(WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the upload hung:\n{log.read_text()}")
    assert code == 0, log.read_text()
    ids = [line for line in log.read_text().splitlines() if len(line) == 36 and line[8] == "-"]
    assert len(ids) == 1, log.read_text()
    return ids[0]


def only_file(deployment: Deployment) -> dict[str, Any]:
    with deployment.api() as api:
        items: list[dict[str, Any]] = api.get("/files").json()["items"]
    assert len(items) == 1, items  # every run went on with the same upload
    return items[0]


def assert_stored_intact(deployment: Deployment, file_id: str, sha: str) -> None:
    record = only_file(deployment)
    # The server's own job runner may already be processing it.
    assert record["status"] in ("uploaded", "processing", "completed"), record
    assert (record["id"], record["stored_size"]) == (file_id, SIZE)
    digest = hashlib.sha256()
    with deployment.api() as api:
        link = api.get(f"/files/{file_id}/download").json()["url"]
        with httpx.stream("GET", link, timeout=60, trust_env=False) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes(MiB):
                digest.update(chunk)
    assert digest.hexdigest() == sha
    assert list(deployment.cache_dir.glob("*.json")) == []  # the resume state is gone


def test_upload_killed_five_times_then_resumed_arrives_intact(
    deployment: Deployment, big_file: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = big_file
    rng = random.Random(f"crash-{deployment.env.get('BIGUPLOAD_STORAGE', 'local')}")
    log = tmp_path / "upload.log"

    # The first kill may come before the upload is even recorded.
    first = deployment.upload(path, log)
    time.sleep(rng.uniform(0.05, 0.5))
    kill(first)
    for _ in range(KILLS - 1):
        mark = len(deployment.proxy.snapshot())
        run = deployment.upload(path, log)
        wait_until(lambda mark=mark: deployment.parts_stored_since(mark) >= 1, run, log)
        time.sleep(rng.uniform(0.0, 0.5))
        kill(run)

    record = only_file(deployment)
    assert record["status"] == "pending"
    with deployment.api() as api:
        held = len(api.get(f"/uploads/{record['id']}/parts").json()["parts"])
    assert 0 < held < PARTS
    states = [json.loads(p.read_text()) for p in deployment.cache_dir.glob("*.json")]
    assert [s["file_id"] for s in states] == [record["id"]]

    mark = len(deployment.proxy.snapshot())
    file_id = finish(deployment.upload(path, log), log)
    assert file_id == record["id"]
    sent = {r.part_number for r in deployment.proxy.snapshot()[mark:] if r.is_part}
    assert len(sent) <= PARTS - held  # only what the store lacked (and no part twice)
    assert_stored_intact(deployment, file_id, sha)


def test_server_killed_and_restarted_mid_upload(
    deployment: Deployment, big_file: tuple[Path, str], tmp_path: Path
) -> None:
    path, sha = big_file
    log = tmp_path / "upload.log"
    run = deployment.upload(path, log)
    wait_until(lambda: deployment.parts_stored_since(0) >= 2, run, log)
    deployment.server.process.send_signal(signal.SIGKILL)
    assert deployment.server.process.wait(WAIT) == -signal.SIGKILL
    deployment.restart()

    # The client retries through the outage; if it ran out of retries, running the same
    # command again resumes. Either way nothing is lost and nothing is stored twice.
    try:
        code = run.wait(WAIT)
    except subprocess.TimeoutExpired:
        run.kill()
        pytest.fail(f"the upload hung:\n{log.read_text()}")
    if code != 0:
        assert code == 1, log.read_text()
        run = deployment.upload(path, log)
    file_id = finish(run, log)
    assert_stored_intact(deployment, file_id, sha)
