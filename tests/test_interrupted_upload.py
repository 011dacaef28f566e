"""A client killed in the middle of an upload: nothing is stored, nothing is lost, retry works.

The client is a raw socket that sends the headers and part of the body, then resets the
connection (as a killed process's socket does). The store must keep nothing of it, the file
stays ``pending``, and the same ticket still works afterwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bigupload import migrate
from bigupload.app import create_app
from bigupload.auth import repository as keys
from bigupload.config import load_settings
from bigupload.db import create_engine, create_sessionmaker
from tests.conftest import SECRET, make_bucket
from tests.support.live import LiveServer
from tests.support.moto import s3_client
from tests.support.net import free_port

SIZE = 8 * 1024 * 1024
SENT = 3 * 1024 * 1024


async def _prepare(url: str) -> str:
    engine = create_engine(url)
    await migrate.upgrade(engine)
    async with create_sessionmaker(engine)() as session, session.begin():
        _, clear = await keys.create(session, "k", "k")
    await engine.dispose()
    return clear


STRICT = pytest.param("s3-strict", marks=pytest.mark.strict_s3)


@pytest.fixture(params=["local", "s3-moto", STRICT])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    port = free_port()
    overrides: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "secret_key": SECRET,
        "port": port,
        "rate_limit": "off",
    }
    if request.param != "local":
        server = request.getfixturevalue(
            "strict_s3" if request.param == "s3-strict" else "moto_server"
        )
        overrides |= {
            "storage": "s3",
            "s3_endpoint_url": server.endpoint_url,
            "s3_region": "us-east-1",
            "s3_bucket": make_bucket(s3_client(server.endpoint_url)),
        }
    settings = load_settings(**overrides)
    settings.data_dir.mkdir(parents=True)
    api_key = asyncio.run(_prepare(settings.effective_database_url))
    live = LiveServer(create_app(settings), port).start()
    try:
        yield live.url, api_key, settings.data_dir / "store" / "tmp"
    finally:
        live.stop()


def send_part_then_die(ticket: dict[str, Any], body: bytes, total: int) -> None:
    """Send the request line, headers and ``body`` of a ``total``-byte PUT, then reset."""
    url = urlsplit(ticket["url"])
    headers = {**ticket["headers"], "Host": url.netloc, "Content-Length": str(total)}
    head = f"PUT {url.path}?{url.query} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    with socket.create_connection((url.hostname, url.port or 80), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        time.sleep(0.2)  # let the server start taking the body before the reset
        # SO_LINGER with a zero timeout: close() sends a RST, as a killed process's socket does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def wait_until(condition: Any, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def start_and_kill(api: httpx.Client, data: bytes, local_tmp: Path) -> dict[str, Any]:
    ticket: dict[str, Any] = api.post(
        "/api/v1/uploads",
        json={"filename": "big.bin", "content_type": "application/octet-stream", "size": SIZE},
    ).json()
    send_part_then_die(ticket, data[:SENT], SIZE)
    if ticket["bucket"] == "local":
        # The partial body was being written to tmp/: it must be gone, and nothing kept.
        assert wait_until(lambda: local_tmp.is_dir() and not any(local_tmp.iterdir()))
    return ticket


def test_a_killed_upload_leaves_nothing_and_the_file_pending(
    service: tuple[str, str, Path],
) -> None:
    base, api_key, local_tmp = service
    data = os.urandom(SIZE)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"}) as api:
        ticket = start_and_kill(api, data, local_tmp)
        done = api.post(f"/api/v1/uploads/{ticket['id']}/complete")
        assert done.status_code == 409
        assert done.json()["error"]["code"] == "upload_incomplete"
        assert api.get(f"/api/v1/files/{ticket['id']}").json()["status"] == "pending"


@pytest.mark.parametrize("service", ["local", "s3-moto"], indirect=True)
def test_the_same_ticket_works_after_a_killed_upload(service: tuple[str, str, Path]) -> None:
    """Not on LocalStack 2026.3: an interrupted conditional write (If-None-Match: *) wedges
    its key there (a retry hangs, a new URL answers 412 while HEAD finds nothing). AWS S3 lets
    the same presigned URL be used again."""
    base, api_key, local_tmp = service
    data = os.urandom(SIZE)
    auth = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base, headers=auth, timeout=60) as api:
        ticket = start_and_kill(api, data, local_tmp)
        retry = httpx.put(ticket["url"], headers=ticket["headers"], content=data, timeout=60)
        assert retry.status_code == 200, retry.text
        done = api.post(f"/api/v1/uploads/{ticket['id']}/complete")
        assert done.status_code == 200
        assert done.json()["stored_size"] == SIZE
        link = api.get(f"/api/v1/files/{ticket['id']}/download").json()
        assert httpx.get(link["url"], timeout=60).content == data
