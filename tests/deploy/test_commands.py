"""The commands the image and the compose services run, run here as processes with the same
arguments and environment: only the addresses of the servers (PostgreSQL, the S3 store, Redis,
the listening address) are this machine's instead of the compose network's.

Redis is Debian's ``redis-server`` (the stack runs Valkey, which speaks its protocol).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.deploy import recipes
from tests.deploy.processes import WAIT, Process
from tests.support.moto import MotoServer, s3_client
from tests.support.net import free_port
from tests.support.redis import RedisServer

#: The settings whose values are addresses in the compose network, and so differ here.
ADDRESSES = {
    "BIGUPLOAD_DATABASE_URL",
    "BIGUPLOAD_S3_ENDPOINT_URL",
    "BIGUPLOAD_PUBLIC_URL",
    "BIGUPLOAD_RATE_LIMIT_STORAGE",
    "BIGUPLOAD_HOST",
    "BIGUPLOAD_PORT",
}


def service_env(name: str, port: int, **addresses: str) -> dict[str, str]:
    """A compose service's environment (the image's ENV, then the service's) as a process here."""
    service = recipes.compose()["services"][name]
    container = recipes.image().env | {k: str(v) for k, v in service["environment"].items()}
    here = {"BIGUPLOAD_HOST": "127.0.0.1", "BIGUPLOAD_PORT": str(port), **addresses}
    assert set(here) <= ADDRESSES
    return recipes.process_env(container, **here)


def service_argv(name: str) -> list[str]:
    service = recipes.compose()["services"][name]
    return recipes.local_argv(recipes.service_argv(service, recipes.image()))


def test_the_image_serves_on_its_defaults_and_its_healthcheck_says_so(tmp_path: Path) -> None:
    image = recipes.image()
    port = free_port()
    env = recipes.process_env(
        image.env,
        BIGUPLOAD_DATA_DIR=str(tmp_path / "data"),  # the volume
        BIGUPLOAD_HOST="127.0.0.1",
        BIGUPLOAD_PORT=str(port),
    )
    server = Process(recipes.local_argv([*image.entrypoint, *image.cmd]), env, tmp_path / "cwd")
    try:
        server.wait_until_answering(f"http://127.0.0.1:{port}/health")
        healthy = recipes.healthcheck(image, env)
        assert healthy.returncode == 0, healthy.stderr
        assert {"bigupload.db", "secret.key", "store"} <= set(os.listdir(tmp_path / "data"))
        server.terminate()
        assert server.wait() == 0, server.output
    finally:
        server.stop()
    unhealthy = recipes.healthcheck(image, env)
    assert unhealthy.returncode == 1
    assert "Connection refused" in unhealthy.stderr


def test_the_image_runs_admin_commands_on_the_volume(tmp_path: Path) -> None:
    image = recipes.image()
    env = recipes.process_env(image.env, BIGUPLOAD_DATA_DIR=str(tmp_path / "data"))
    argv = recipes.local_argv(image.entrypoint)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    made = subprocess.run(
        [*argv, "db", "upgrade"], env=env, cwd=cwd, capture_output=True, text=True, timeout=WAIT
    )
    assert made.returncode == 0, made.stderr
    key = subprocess.run(
        [*argv, "keys", "create", "alice"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert key.returncode == 0, key.stderr
    assert key.stdout.startswith("bu_")
    assert f"registry {tmp_path / 'data' / 'bigupload.db'}" in key.stderr


def test_the_storage_setup_service_makes_the_bucket_once(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    script = recipes.compose()["services"]["storage-setup"]["command"][0]
    make_bucket, _, then = script.partition(" && ")
    assert then == "exec bigupload storage setup"  # run by the storage tests, not here
    argv = service_argv("storage-setup")
    assert argv[-3:] == ["sh", "-c", script]
    env = service_env(
        "storage-setup", free_port(), BIGUPLOAD_S3_ENDPOINT_URL=moto_server.endpoint_url
    )
    bucket = env["BIGUPLOAD_S3_BUCKET"]
    for _ in range(2):  # a second `docker compose up` finds it made
        done = subprocess.run(
            [*argv[:-1], make_bucket],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert done.returncode == 0, done.stderr
    names = [b["Name"] for b in s3_client(moto_server.endpoint_url).list_buckets()["Buckets"]]
    assert names.count(bucket) == 1


@pytest.mark.postgres
def test_a_replica_and_the_worker_run_as_compose_starts_them(
    tmp_path: Path, moto_server: MotoServer, pg_url: str, redis: RedisServer
) -> None:
    port = free_port()
    addresses = {
        "BIGUPLOAD_DATABASE_URL": pg_url,
        "BIGUPLOAD_S3_ENDPOINT_URL": moto_server.endpoint_url,
        "BIGUPLOAD_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BIGUPLOAD_RATE_LIMIT_STORAGE": redis.url,
    }
    serve_env = service_env("bigupload-1", port, **addresses)
    s3_client(moto_server.endpoint_url).create_bucket(Bucket=serve_env["BIGUPLOAD_S3_BUCKET"])
    worker_env = service_env("worker", free_port(), **addresses)
    assert {k: v for k, v in worker_env.items() if k != "BIGUPLOAD_PORT"} == {
        k: v for k, v in serve_env.items() if k != "BIGUPLOAD_PORT"
    }
    base = f"http://127.0.0.1:{port}"
    server = Process(service_argv("bigupload-1"), serve_env, tmp_path / "serve")
    worker = Process(service_argv("worker"), worker_env, tmp_path / "worker")
    try:
        api_key = server.line_after("It is shown only once")
        server.wait_until_answering(f"{base}/health")
        healthy = recipes.healthcheck(recipes.image(), serve_env)
        assert healthy.returncode == 0, healthy.stderr + server.output
        body = os.urandom(2048)
        auth = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=base, timeout=WAIT, trust_env=False) as http:
            ticket = http.post(
                "/api/v1/uploads",
                headers=auth,
                json={
                    "filename": "a.bin",
                    "content_type": "application/octet-stream",
                    "size": len(body),
                    "checksum_sha256": hashlib.sha256(body).hexdigest(),
                },
            ).json()
            assert ticket["url"].startswith(moto_server.endpoint_url)
            stored = http.put(ticket["url"], headers=ticket["headers"], content=body)
            assert stored.status_code == 200
            done = http.post(f"/api/v1/uploads/{ticket['id']}/complete", headers=auth)
            assert done.json()["status"] == "uploaded"
            # RUN_JOBS=false: the worker, not the replica, processes the file.
            status = poll_status(http, auth, ticket["id"])
        assert status == "completed", worker.output
        assert redis.dbsize() > 0  # the replica's rate-limit counters
        assert "rate limit" not in server.output.lower()  # no fallback warning
        assert f"file {ticket['id']} processed" in worker.output
        assert f"file {ticket['id']} processed" not in server.output
        for process in (server, worker):
            process.terminate()
            assert process.wait() == 0, process.output
    finally:
        server.stop()
        worker.stop()


def poll_status(http: httpx.Client, auth: dict[str, str], file_id: str) -> str:
    """The file's status once it is no longer ``uploaded`` or ``processing`` (bounded)."""
    for _ in range(600):
        status: str = http.get(f"/api/v1/files/{file_id}", headers=auth).json()["status"]
        if status not in ("uploaded", "processing"):
            return status
        http.get("/health")  # a round trip between looks, not a timed wait
    return status


@pytest.mark.postgres
def test_both_replicas_start_at_once_on_a_new_registry(
    tmp_path: Path, moto_server: MotoServer, pg_url: str, redis: RedisServer
) -> None:
    """Together on an empty registry, as `docker compose up` starts them: both migrate (one at a
    time) and serve, and one admin key is made and shown, by one of them."""
    replicas: list[tuple[Process, int]] = []
    try:
        for name in ("bigupload-1", "bigupload-2"):
            port = free_port()
            env = service_env(
                name,
                port,
                BIGUPLOAD_DATABASE_URL=pg_url,
                BIGUPLOAD_S3_ENDPOINT_URL=moto_server.endpoint_url,
                BIGUPLOAD_PUBLIC_URL=f"http://127.0.0.1:{port}",
                BIGUPLOAD_RATE_LIMIT_STORAGE=redis.url,
            )
            replicas.append((Process(service_argv(name), env, tmp_path / name), port))
        for process, port in replicas:
            process.wait_until_answering(f"http://127.0.0.1:{port}/health")
        shown = [p for p, _ in replicas if "It is shown only once" in p.output]
        assert len(shown) == 1, [p.output for p, _ in replicas]
        api_key = shown[0].line_after("It is shown only once")
        for _, port in replicas:  # the one key works on both
            answer = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/files",
                headers={"Authorization": f"Bearer {api_key}"},
                trust_env=False,
            )
            assert answer.status_code == 200
    finally:
        for process, _ in replicas:
            process.stop()
