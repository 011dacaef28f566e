"""A client killed in the middle of an upload: nothing is stored, nothing is lost, retry works.

The client is a raw socket that sends the headers and part of the body, then resets the
connection (as a killed process's socket does). The store must keep nothing of it, the file
stays ``pending``, and the same ticket still works afterwards.
"""

from __future__ import annotations

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

from tests.support.service import STORES, live_service

SIZE = 8 * 1024 * 1024
SENT = 3 * 1024 * 1024


@pytest.fixture(params=STORES)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    with live_service(request, tmp_path, request.param) as live:
        yield live.url, live.api_key, live.settings.data_dir / "store" / "tmp"


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


def test_a_killed_upload_never_becomes_an_uploaded_file(
    service: tuple[str, str, Path],
) -> None:
    """bigupload's own store keeps nothing of a killed upload, so the file stays pending.

    A third-party store may keep the partial body (LocalStack 2026.3 sometimes does; AWS S3
    does not): then ``complete`` finds fewer bytes than declared and fails the file with that
    reason. Either way a partial object never becomes an ``uploaded`` file.
    """
    base, api_key, local_tmp = service
    data = os.urandom(SIZE)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"}) as api:
        ticket = start_and_kill(api, data, local_tmp)
        done = api.post(f"/api/v1/uploads/{ticket['id']}/complete")
        record = api.get(f"/api/v1/files/{ticket['id']}").json()
    if done.status_code == 422 and ticket["bucket"] != "local":
        assert done.json()["error"]["code"] == "size_mismatch"
        assert done.json()["error"]["details"]["declared"] == SIZE
        assert done.json()["error"]["details"]["stored"] < SIZE
        assert record["status"] == "failed"
        assert record["error"].endswith(f"{SIZE} were declared")
    else:
        assert done.status_code == 409, done.text
        assert done.json()["error"]["code"] == "upload_incomplete"
        assert record["status"] == "pending"


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
