"""After the upload, end to end: real ``bigupload serve`` (and ``bigupload worker``) processes.

One PUT to the local store and nothing else: the store reports the object, processing checks it
and detects its type, and the uploader sees ``pending -> uploaded -> processing -> completed``
both on the server-sent event stream and at a webhook receiver that checks every signature.
Another user's stream sees none of it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.cli.helpers import Server, bigupload, clean_env
from tests.cli.test_serve import one_banner_key
from tests.support.net import free_port

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WAIT = 60.0
LIFECYCLE = ["file.pending", "file.uploaded", "file.processing", "file.completed"]
PDF = b"%PDF-1.7\n" + b"1 0 obj << /Type /Catalog >> endobj\n" * 2000 + b"%%EOF\n"


class Receiver:
    """Records webhook deliveries (headers and body) on a loopback port."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.deliveries.append((dict(self.headers.items()), body))
                    receiver.lock.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def types_for(self, file_id: str) -> list[str]:
        with self.lock:
            bodies = [json.loads(body) for _, body in self.deliveries]
        return [b["type"] for b in bodies if b["data"]["file_id"] == file_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class EventStream:
    """A reader of ``GET /api/v1/events`` on a thread, collecting ``(id, event, data)``."""

    def __init__(self, base_url: str, key: str) -> None:
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.lock = threading.Condition()
        self.opened = threading.Event()
        self.client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(WAIT), trust_env=False)
        self.key = key
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.opened.wait(WAIT), "the event stream never opened"

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        fields: dict[str, str] = {}
        try:
            with self.client.stream("GET", "/api/v1/events", headers=headers) as response:
                assert response.status_code == 200
                self.opened.set()
                for line in response.iter_lines():
                    if line == "" and "data" in fields:
                        with self.lock:
                            self.events.append(
                                (int(fields["id"]), fields["event"], json.loads(fields["data"]))
                            )
                            self.lock.notify_all()
                        fields = {}
                    elif ":" in line and not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except httpx.HTTPError:
            pass  # the server stopped or the client was closed
        finally:
            self.opened.set()

    def types_for(self, file_id: str) -> list[str]:
        with self.lock:
            return [kind for _, kind, data in self.events if data["file_id"] == file_id]

    def close(self) -> None:
        self.client.close()


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def start(data_dir: Path, receiver: Receiver, **env: str) -> tuple[Server, str]:
    server = Server(
        data_dir,
        free_port(),
        BIGUPLOAD_WEBHOOKS=json.dumps([{"url": receiver.url, "secret": SECRET}]),
        BIGUPLOAD_JOB_POLL_INTERVAL="0.1",
        BIGUPLOAD_ALLOWED_CONTENT_TYPES="application/pdf,text/plain",
        BIGUPLOAD_RATE_LIMIT="off",
        **env,
    )
    server.wait_for_line("listening on")
    server.wait_until_answering()
    return server, one_banner_key(server.stderr)


def put_a_pdf(base_url: str, key: str) -> str:
    """Create an upload and PUT its bytes; never call complete: the store reports the object."""
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base_url, timeout=WAIT, trust_env=False) as http:
        ticket = http.post(
            "/api/v1/uploads",
            json={"filename": "report.pdf", "content_type": "application/pdf", "size": len(PDF)},
            headers=auth,
        )
        assert ticket.status_code == 201, ticket.text
        body = ticket.json()
        put = http.request(body["method"], body["url"], content=PDF, headers=body["headers"])
        assert put.status_code == 200, put.text
        file_id: str = body["id"]
        return file_id


def file_info(base_url: str, key: str, file_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=WAIT, trust_env=False) as http:
        response = http.get(f"/api/v1/files/{file_id}", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        info: dict[str, Any] = response.json()
        return info


def assert_processed(info: dict[str, Any]) -> None:
    assert info["status"] == "completed", info
    assert info["detected_content_type"] == "application/pdf"
    assert info["stored_size"] == len(PDF)
    assert info["checksum_sha256"] == hashlib.sha256(PDF).hexdigest()


def assert_signed_in_order(receiver: Receiver, file_id: str) -> None:
    wait_for(lambda: receiver.types_for(file_id) == LIFECYCLE, "the four webhook deliveries")
    hook = Webhook(SECRET)
    impostor = Webhook("whsec_" + "A" * 32)
    with receiver.lock:
        deliveries = list(receiver.deliveries)
    for headers, body in deliveries:
        hook.verify(body, headers)  # raises unless signed with our secret
        with pytest.raises(Exception, match="signature"):
            impostor.verify(body, headers)


def test_a_put_alone_ends_completed_seen_live_and_by_webhook(
    tmp_path: Path, receiver: Receiver
) -> None:
    data_dir = tmp_path / "data"
    server, alice = start(data_dir, receiver)
    try:
        made = bigupload(data_dir, "keys", "create", "bob")
        assert made.code == 0, made.stderr
        bob = made.out_lines[-1]
        alice_stream = EventStream(server.base_url, alice)
        bob_stream = EventStream(server.base_url, bob)
        try:
            file_id = put_a_pdf(server.base_url, alice)
            wait_for(lambda: alice_stream.types_for(file_id) == LIFECYCLE, "alice's four events")
            assert_processed(file_info(server.base_url, alice, file_id))
            assert_signed_in_order(receiver, file_id)
            # Bob's stream was open all along and saw nothing of alice's file.
            assert bob_stream.events == []
            assert bob_stream.thread.is_alive()
        finally:
            alice_stream.close()
            bob_stream.close()
    finally:
        server.stop()


def test_a_separate_worker_does_the_jobs_when_the_server_does_not(
    tmp_path: Path, receiver: Receiver
) -> None:
    import subprocess

    from tests.cli.helpers import BIGUPLOAD

    data_dir = tmp_path / "data"
    server, alice = start(data_dir, receiver, BIGUPLOAD_RUN_JOBS="false")
    worker = None
    try:
        file_id = put_a_pdf(server.base_url, alice)
        wait_for(
            lambda: file_info(server.base_url, alice, file_id)["status"] == "uploaded",
            "the store's report",
        )
        time.sleep(0.5)  # several poll intervals: nothing processes it without a worker
        assert file_info(server.base_url, alice, file_id)["status"] == "uploaded"
        assert receiver.types_for(file_id) == []
        worker = subprocess.Popen(
            [str(BIGUPLOAD), "worker"],
            env=clean_env(
                data_dir,
                BIGUPLOAD_WEBHOOKS=json.dumps([{"url": receiver.url, "secret": SECRET}]),
                BIGUPLOAD_JOB_POLL_INTERVAL="0.1",
                BIGUPLOAD_ALLOWED_CONTENT_TYPES="application/pdf,text/plain",
            ),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(
            lambda: file_info(server.base_url, alice, file_id)["status"] == "completed",
            "the worker to process the file",
        )
        assert_processed(file_info(server.base_url, alice, file_id))
        assert_signed_in_order(receiver, file_id)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                code = worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(15)
                code = None
            assert code == 0, worker.stderr.read() if worker.stderr else ""
        server.stop()
