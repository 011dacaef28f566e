"""What a crash leaves in the local store's ``tmp/`` is removed, at start and by the sweep,
counted, and never a file a live request writes (in this process or another)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bigupload.storage.local import LocalStorage, tmpfiles
from bigupload.storage.local.spool import WRITE_BUFFER
from tests.cli.helpers import TIMEOUT, Server, bigupload, new_registry
from tests.conftest import SECRET, TEST_BASE_URL
from tests.storage.helpers import http_for
from tests.support.net import free_port

BOUND = 750  # polls of 20 ms: an upper bound against hanging, never a measure of speed
HEX = "0123456789abcdef" * 2


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> LocalStorage:
    """The store ``bigupload`` builds on ``data_dir``."""
    return LocalStorage(data_dir / "store", public_url=TEST_BASE_URL, secret=SECRET)


def names(directory: Path) -> set[str]:
    return {entry.name for entry in directory.iterdir()}


def aged(path: Path, seconds: float) -> Path:
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


async def test_leftovers_of_every_kind_are_removed_and_counted(store: LocalStorage) -> None:
    tmp = store.tmp
    (tmp / HEX).write_bytes(b"u" * 1000)  # an upload or a join whose process died: no lock
    (tmp / f"{HEX[::-1]}.json").write_text("{}")  # metadata replaced by a process that died
    aged(tmp / f"{HEX[::-1]}.json", tmpfiles.STALE_AFTER + 1)
    (tmp / f"{'b' * 32}.json").write_text("{}")  # being replaced right now: kept
    trash = tmp / f"{HEX}.removed"  # an ended upload half-deleted
    (trash / "parts").mkdir(parents=True)
    (trash / "parts" / "1-x").write_bytes(b"p" * 500)
    building = tmp / f"{'c' * 32}.new"  # an upload being begun right now: kept
    building.mkdir()

    removed = await store.remove_leftovers()

    assert (removed.files, removed.bytes) == (3, 1000 + 2 + 500)
    assert names(tmp) == {f"{'b' * 32}.json", f"{'c' * 32}.new"}
    aged(building, tmpfiles.STALE_AFTER + 1)
    assert (await store.remove_leftovers()).files == 0  # an empty directory: no file freed
    assert names(tmp) == {f"{'b' * 32}.json"}


def test_a_file_being_written_or_joined_is_kept_until_its_writer_lets_go(
    store: LocalStorage,
) -> None:
    handle, path = tmpfiles.create(store.tmp)  # as a PUT, a part or a join makes it
    handle.write(b"j" * 100)
    handle.flush()
    assert tmpfiles.remove_leftovers(store.tmp).files == 0
    assert path.exists()
    handle.close()  # its process let go (or died)
    assert (tmpfiles.remove_leftovers(store.tmp).files, path.exists()) == (1, False)


def test_a_file_removed_before_its_writer_locked_it_is_made_again(
    store: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_flock = tmpfiles.fcntl.flock
    raced: list[str] = []

    def sweeper_first(fd: int, operation: int) -> None:
        if not raced:  # a sweep removes the new file between its creation and its lock
            [name] = names(store.tmp)
            raced.append(name)
            assert tmpfiles.remove_leftovers(store.tmp).files == 1
        real_flock(fd, operation)

    monkeypatch.setattr(tmpfiles.fcntl, "flock", sweeper_first)
    handle, path = tmpfiles.create(store.tmp)
    monkeypatch.undo()
    try:
        assert path.name != raced[0] and names(store.tmp) == {path.name}
        assert tmpfiles.remove_leftovers(store.tmp).files == 0  # locked: the writer's
    finally:
        handle.close()


async def test_a_sweep_during_a_live_upload_leaves_it_alone(
    store: LocalStorage, data_dir: Path
) -> None:
    new_registry(data_dir)  # the registry the other process's sweep reads
    size = 3 * WRITE_BUFFER
    signed = store.presign_put(
        "live", content_type="video/mp4", size=size, checksum_sha256=None, expires_in=600
    )
    half_way, resume = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"a" * (2 * WRITE_BUFFER)
        half_way.set()
        await resume.wait()
        yield b"a" * WRITE_BUFFER

    stale = store.tmp / HEX
    stale.write_bytes(b"s" * 4096)  # a crash's leftover, to show the sweep does remove
    async with http_for(store) as http:
        put = asyncio.create_task(http.put(signed.url, content=body(), headers=signed.headers))
        async with asyncio.timeout(TIMEOUT):
            await half_way.wait()
        [live] = [p for p in store.tmp.iterdir() if p != stale]
        assert live.stat().st_size >= WRITE_BUFFER  # written and held by this process
        # ``bigupload sweep`` in another process, as a second worker's sweep would be
        swept = await asyncio.to_thread(
            bigupload, data_dir, "sweep", "--json", BIGUPLOAD_SECRET_KEY=SECRET
        )
        assert swept.code == 0, swept.stderr
        report = json.loads(swept.stdout)
        assert (report["leftover_files_removed"], report["leftover_bytes_freed"]) == (1, 4096)
        assert (await store.remove_leftovers()).files == 0  # and this process's own sweep
        assert names(store.tmp) == {live.name}
        resume.set()
        answer = await put
    assert answer.status_code == 200, answer.text
    assert await store.read_range("live", 0, size) == b"a" * size
    assert names(store.tmp) == set()


# -- a real server killed mid-upload, then started again -------------------------------------


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"BIGUPLOAD_SECRET_KEY": SECRET, "BIGUPLOAD_RATE_LIMIT": "off"}


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def server() -> Iterator[list[Server]]:
    """``bigupload serve`` processes on ``data_dir`` (the test starts and kills them)."""
    started: list[Server] = []
    try:
        yield started
    finally:
        for each in started:
            each.stop()


def test_a_server_killed_mid_put_leaves_a_temp_file_that_its_restart_removes(
    data_dir: Path, port: int, server_env: dict[str, str], server: list[Server]
) -> None:
    store = LocalStorage(data_dir / "store", public_url=f"http://127.0.0.1:{port}", secret=SECRET)
    size = 8 * WRITE_BUFFER
    signed = store.presign_put(
        "killed", content_type="video/mp4", size=size, checksum_sha256=None, expires_in=600
    )
    server.append(Server(data_dir, port, **server_env))
    server[0].wait_until_answering()
    target = urlsplit(signed.url)
    head = [f"PUT {target.path}?{target.query} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    head += [f"{k}: {v}" for k, v in {**signed.headers, "Content-Length": str(size)}.items()]
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        client.sendall(b"k" * (3 * WRITE_BUFFER))
        for _ in range(BOUND):  # until the server has written some of it to tmp/
            if sum(p.stat().st_size for p in store.tmp.iterdir()) >= WRITE_BUFFER:
                break
            time.sleep(0.02)
        server[0].process.kill()  # SIGKILL, by its PID: no clean-up runs
        server[0].process.wait(TIMEOUT)
    [left] = list(store.tmp.iterdir())
    left_size = left.stat().st_size
    assert left_size >= WRITE_BUFFER

    server.append(Server(data_dir, port, **server_env))
    server[1].wait_until_answering()
    assert list(store.tmp.iterdir()) == []
    line = server[1].wait_for_line("leftover temporary file(s)")
    assert f"removed 1 leftover temporary file(s), {left_size} bytes" in line
    with httpx.Client(trust_env=False, timeout=30) as http:  # the URL works: nothing was stored
        again = http.put(signed.url, content=b"k" * size, headers=signed.headers)
    assert again.status_code == 200, again.text
