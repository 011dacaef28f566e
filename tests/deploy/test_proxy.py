"""The compose stack's Caddyfile, run by Caddy (Debian's) in front of the two replicas as
compose starts them, with the addresses of this machine's servers in place of the compose
network's: the bucket's path goes to the S3 server, the rest round robin to the replicas, and
an upload signed for the proxy's address goes through it to the store and completes. With
LocalStack, which checks signatures, the Host header is shown to pass through unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy import recipes
from tests.deploy.processes import WAIT, Process
from tests.deploy.test_commands import service_argv, service_env
from tests.support.moto import s3_client
from tests.support.net import free_port
from tests.support.redis import RedisServer

CADDYFILE = recipes.ROOT / "deploy/caddy/Caddyfile"


@pytest.fixture(params=["s3-moto", pytest.param("s3-strict", marks=pytest.mark.strict_s3)])
def s3_endpoint(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue("moto_server" if request.param == "s3-moto" else "strict_s3")
    endpoint: str = server.endpoint_url
    return endpoint


def caddyfile_here(path: Path, addresses: dict[str, str]) -> Path:
    text = CADDYFILE.read_text()
    for name, address in addresses.items():
        assert name in text
        text = text.replace(name, address)
    path.write_text(text)
    return path


def until_served(http: httpx.Client, proxy: Process) -> None:
    deadline = time.monotonic() + WAIT
    while http.get("/health").status_code != 200:
        if time.monotonic() > deadline:
            pytest.fail(f"the proxy never reached a replica:\n{proxy.output}")
        time.sleep(0.2)


@pytest.mark.postgres
def test_the_proxy_serves_the_page_api_and_bucket_on_one_port(
    tmp_path: Path, pg_url: str, redis: RedisServer, s3_endpoint: str
) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.fail("caddy not found: run make test-deps")
    proxy_port = free_port()
    site = f"http://127.0.0.1:{proxy_port}"  # bigupload.localhost:8080 in the stack
    replica_ports = {"bigupload-1": free_port(), "bigupload-2": free_port()}
    replicas: list[Process] = []
    proxy: Process | None = None
    try:
        for name, port in replica_ports.items():
            env = service_env(
                name,
                port,
                BIGUPLOAD_DATABASE_URL=pg_url,
                BIGUPLOAD_S3_ENDPOINT_URL=site,
                BIGUPLOAD_PUBLIC_URL=site,
                BIGUPLOAD_RATE_LIMIT_STORAGE=redis.url,
            )
            replicas.append(Process(service_argv(name), env, tmp_path / name))
        bucket = env["BIGUPLOAD_S3_BUCKET"]
        s3 = s3_client(s3_endpoint)
        if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
            s3.create_bucket(Bucket=bucket)
        config = caddyfile_here(
            tmp_path / "Caddyfile",
            {
                "bigupload-1:8000": f"127.0.0.1:{replica_ports['bigupload-1']}",
                "bigupload-2:8000": f"127.0.0.1:{replica_ports['bigupload-2']}",
                "seaweedfs:8333": s3_endpoint.removeprefix("http://"),
            },
        )
        proxy_service = recipes.compose()["services"]["proxy"]
        proxy_env = {k: v for k, v in os.environ.items() if not k.startswith("BIGUPLOAD_")}
        proxy_env |= {k: str(v) for k, v in proxy_service["environment"].items()}
        proxy_env |= {
            "SITE_PORT": str(proxy_port),
            "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
            "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
        }
        proxy = Process(
            [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
            proxy_env,
            tmp_path / "caddy",
        )
        proxy.wait_until_answering(f"{site}/.proxy/health")
        for process, port in zip(replicas, replica_ports.values(), strict=True):
            process.wait_until_answering(f"http://127.0.0.1:{port}/health")
        shown = [p for p in replicas if "It is shown only once" in p.output]
        api_key = shown[0].line_after("It is shown only once")
        auth = {"Authorization": f"Bearer {api_key}"}
        body = os.urandom(4096)
        with httpx.Client(base_url=site, timeout=WAIT, trust_env=False) as http:
            assert http.get("/.proxy/health").text == "ok"
            # Caddy's first active health check may have found the replicas still starting:
            # it answers 503 until its next one (health_interval) finds them up.
            until_served(http, proxy)
            page = http.get("/")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            ready = http.get("/health/ready")
            assert ready.json()["checks"] == {"database": "ok", "storage": "ok"}, ready.text
            ticket = http.post(
                "/api/v1/uploads",
                headers=auth,
                json={
                    "filename": "through-the-proxy.bin",
                    "content_type": "application/octet-stream",
                    "size": len(body),
                    "checksum_sha256": hashlib.sha256(body).hexdigest(),
                },
            ).json()
            assert ticket["url"].startswith(f"{site}/{bucket}/"), ticket
            stored = http.put(ticket["url"], headers=ticket["headers"], content=body)
            assert stored.status_code == 200, stored.text
            done = http.post(f"/api/v1/uploads/{ticket['id']}/complete", headers=auth)
            assert done.json()["status"] == "uploaded", done.text
            link = http.get(f"/api/v1/files/{ticket['id']}/download", headers=auth).json()
            assert link["url"].startswith(f"{site}/{bucket}/")
            assert http.get(link["url"]).content == body
        stored_object = s3.get_object(Bucket=bucket, Key=ticket["key"])["Body"].read()
        assert stored_object == body
    finally:
        if proxy is not None:
            proxy.stop()
        for process in replicas:
            process.stop()
