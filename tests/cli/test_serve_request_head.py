"""``bigupload serve`` refuses oversized request lines and headers in the API's JSON shape,
over real sockets, and still serves ordinary requests (on the same connection too)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bigupload.request_head import MAX_HEAD_BYTES, MAX_TARGET_BYTES
from tests.cli.helpers import TIMEOUT, Server
from tests.support.net import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("serve") / "data", free_port())
    try:
        started.wait_until_answering()
        yield started
    finally:
        started.stop()


def exchange(server: Server, head: bytes) -> tuple[int, dict[str, str], Any]:
    """Send ``head`` on a new connection (from a thread: the server may refuse before it has
    read it all) and read the answer to its end; answer its status, headers and JSON body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:

        def send() -> None:
            # Refused and closed before everything was sent: the answer is read below.
            with contextlib.suppress(OSError):
                sock.sendall(head)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # unread bytes of ours made the close a reset; what came before it counts
        sender.join(TIMEOUT)
    head_part, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, json.loads(body)


def get(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def assert_refused(answer: tuple[int, dict[str, str], Any], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body["error"]["code"] == code


def test_a_40_kb_query_string_is_414(server: Server) -> None:
    assert_refused(exchange(server, get("/health?q=" + "a" * 40_000)), 414, "uri_too_long")


def test_a_target_just_over_the_limit_is_414(server: Server) -> None:
    target = "/health?q=" + "a" * (MAX_TARGET_BYTES - 9)
    assert len(target) == MAX_TARGET_BYTES + 1
    assert_refused(exchange(server, get(target)), 414, "uri_too_long")


def test_a_1_mb_header_is_431(server: Server) -> None:
    answer = exchange(server, get("/health", "X-Big: " + "b" * 1_000_000))
    assert_refused(answer, 431, "headers_too_large")
    assert str(MAX_HEAD_BYTES) in answer[2]["error"]["message"]


def test_10000_headers_are_431(server: Server) -> None:
    headers = [f"X-H{i}: v" for i in range(10_000)]
    assert_refused(exchange(server, get("/health", *headers)), 431, "headers_too_large")


def test_heads_within_what_is_read_get_the_finer_limits(server: Server) -> None:
    many = [f"X-H{i}: v" for i in range(101)]
    assert_refused(exchange(server, get("/health", *many)), 431, "headers_too_large")
    large = "X-Big: " + "b" * 17_000
    assert_refused(exchange(server, get("/api/v1/files", large)), 431, "headers_too_large")


def test_what_is_not_http_is_a_json_400(server: Server) -> None:
    assert_refused(exchange(server, b"GET /health HTTP/1.1\r\nHost\r\n\r\n"), 400, "bad_request")


def test_ordinary_requests_still_work_on_one_connection(server: Server) -> None:
    """Near the limits, with a body larger than any head limit, several on one connection."""
    with httpx.Client(base_url=server.base_url, timeout=TIMEOUT, trust_env=False) as http:
        near = http.get("/health", params={"q": "a" * (MAX_TARGET_BYTES - 100)})
        assert near.status_code == 200
        headers = {f"X-H{i}": "v" * 100 for i in range(90)}
        assert http.get("/health", headers=headers).status_code == 200
        big_body = http.post("/api/v1/session", content=b"x" * 200_000)
        assert big_body.status_code == 400, big_body.text
        assert big_body.json()["error"]["code"] == "invalid_json"
        assert http.get("/health").status_code == 200
        assert http.get("/health/ready").status_code == 200
