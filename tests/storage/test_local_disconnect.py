"""A client that goes away in the middle of an upload (Uppy's pause or cancel, Ctrl-C of the CLI)
is a normal event: over real HTTP, one INFO line with the request id, a count, 499 in the access
log, no traceback nor 500, and nothing left in the store's ``tmp/``."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI

from bigupload.app import create_app
from bigupload.storage.local import LocalStorage
from bigupload.storage.local.spool import WRITE_BUFFER
from tests.conftest import make_settings
from tests.support.live import LiveServer
from tests.support.net import free_port

BOUND = 750  # polls of 20 ms: an upper bound against hanging, never a measure of speed
SIZE = 4 * WRITE_BUFFER


@pytest.fixture
def served(local_store: LocalStorage, tmp_path: Path) -> Iterator[tuple[FastAPI, LiveServer]]:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    app = create_app(settings, storage=local_store)  # no lifespan: the registry is not used
    live = LiveServer(app, free_port()).start()
    try:
        yield app, live
    finally:
        live.stop()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(BOUND):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the server never got there")


def put_head(store: LocalStorage, port: int, request_id: str) -> bytes:
    signed = store.presign_put(
        "cut/off", content_type="video/mp4", size=SIZE, checksum_sha256=None, expires_in=60
    )
    target = urlsplit(signed.url)
    headers = {**signed.headers, "Content-Length": str(SIZE), "X-Request-ID": request_id}
    lines = [f"PUT {target.path}?{target.query} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_put_cut_mid_body_is_one_info_line_and_leaves_nothing(
    served: tuple[FastAPI, LiveServer], local_store: LocalStorage, caplog: pytest.LogCaptureFixture
) -> None:
    app, live = served
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", live.port)) as client:
        client.sendall(put_head(local_store, live.port, "cut-off-upload"))
        client.sendall(b"x" * (SIZE // 2))  # half the body: the server is spooling it to tmp/
        await until(lambda: any(local_store.tmp.iterdir()))
    await until(lambda: any(r.name == "bigupload.access" for r in caplog.records))

    assert app.state.disconnects.requests == 1
    left = [r for r in caplog.records if r.name == "bigupload.disconnects"]
    assert len(left) == 1
    assert left[0].levelno == logging.INFO and left[0].exc_info is None
    assert "request_id=cut-off-upload" in left[0].getMessage()
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.INFO or r.exc_info] == []
    (access,) = [r for r in caplog.records if r.name == "bigupload.access"]
    assert access.status == 499  # type: ignore[attr-defined]
    assert list(local_store.tmp.iterdir()) == []
    assert await local_store.stat("cut/off") is None
