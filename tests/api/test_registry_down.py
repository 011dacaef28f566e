"""When the registry fails: 503 ``database_unavailable`` (507 for a full disk), soon, with
``Retry-After``, readiness saying why, nothing lost, and everything working again after."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.helpers import start, upload_request, uploaded
from tests.conftest import Caller

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

#: Each test waits for the registry at most this long per request.
TIMEOUT = 0.5


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"database_timeout_seconds": TIMEOUT}


def assert_unavailable(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert (error["code"], error["details"]) == ("database_unavailable", {"reason": reason})
    assert response.headers["retry-after"] == "5"


async def assert_not_ready(http: httpx.AsyncClient, database: str) -> None:
    response = await http.get("/health/ready")
    assert response.status_code == 503, response.text
    assert response.json()["checks"] == {"database": f"error: {database}", "storage": "ok"}


async def assert_ready(http: httpx.AsyncClient) -> None:
    response = await http.get("/health/ready")
    assert response.status_code == 200, response.text


# -- SQLite locked by another process -----------------------------------------------------------

_HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
connection.execute("ROLLBACK")
"""


@contextlib.contextmanager
def locked_by_another_process(path: Path) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


class TestSQLiteLocked:
    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"

    async def test_requests_and_readiness_are_503_until_the_lock_is_released(
        self, alice: Caller, tmp_path: Path
    ) -> None:
        kept = await start(alice, b"abc")
        with locked_by_another_process(tmp_path / "registry.db"):
            assert_unavailable(await alice.get("/api/v1/files"), "locked")
            assert_unavailable(await alice.get(f"/api/v1/files/{kept['id']}"), "locked")
            assert_unavailable(
                await alice.post("/api/v1/uploads", json=upload_request(b"x")), "locked"
            )
            await assert_not_ready(alice.http, "locked")
        await assert_ready(alice.http)
        listed = (await alice.get("/api/v1/files")).json()["items"]
        assert [item["id"] for item in listed] == [kept["id"]]
        await start(alice, b"again")


# -- a read-only or full SQLite registry: a real tmpfs (root ignores file modes) ----------------


@pytest.fixture
def registry_mount(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "registry"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=False)
        subprocess.run(["umount", str(mount)], check=True)


def remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)


class TestSQLiteReadOnly:
    @pytest.fixture
    def database_url(self, registry_mount: Path) -> str:
        return f"sqlite+aiosqlite:///{registry_mount / 'registry.db'}"

    async def test_requests_and_readiness_are_503_until_it_is_writable(
        self, app: FastAPI, alice: Caller, registry_mount: Path
    ) -> None:
        kept = await start(alice, b"abc")
        await app.state.engine.dispose()  # a mount with a file open for writing stays rw
        remount(registry_mount, "ro")
        assert_unavailable(await alice.get("/api/v1/files"), "read_only")
        assert_unavailable(
            await alice.post("/api/v1/uploads", json=upload_request(b"x")), "read_only"
        )
        await assert_not_ready(alice.http, "read_only")
        remount(registry_mount, "rw")
        await assert_ready(alice.http)
        listed = (await alice.get("/api/v1/files")).json()["items"]
        assert [item["id"] for item in listed] == [kept["id"]]


def fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s file system; answers the file to remove."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            for _ in range(4096):  # at most 4 GiB: far beyond the test's tmpfs
                out.write(b"\0" * (1024 * 1024))
                out.flush()
        except OSError:
            pass
    return filler


class TestSQLiteDiskFull:
    @pytest.fixture
    def database_url(self, registry_mount: Path) -> str:
        return f"sqlite+aiosqlite:///{registry_mount / 'registry.db'}"

    async def test_writes_are_507_nothing_is_lost_and_they_work_again_with_room(
        self, alice: Caller, registry_mount: Path
    ) -> None:
        kept = await uploaded(alice, b"kept")
        filler = fill(registry_mount)
        answers = []
        for _ in range(50):  # the log holds a few already-written pages: fill them first
            answer = await alice.post("/api/v1/uploads", json=upload_request(b"x"))
            answers.append(answer)
            if answer.status_code != 201:
                break
        refused = answers[-1]
        assert refused.status_code == 507, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["details"]) == (
            "insufficient_storage",
            {"reason": "disk_full"},
        )
        assert int(refused.headers["retry-after"]) > 0
        await assert_not_ready(alice.http, "disk_full")
        recorded = {kept["id"]} | {a.json()["id"] for a in answers if a.status_code == 201}

        filler.unlink()
        await assert_ready(alice.http)
        listed = (await alice.get("/api/v1/files", params={"limit": 100})).json()["items"]
        assert {item["id"] for item in listed} == recorded
        assert (await alice.get(f"/api/v1/files/{kept['id']}")).json()["status"] == "uploaded"
        await start(alice, b"again")


# -- PostgreSQL stopped ---------------------------------------------------------------------


class TestPostgresStopped:
    @pytest.fixture
    def own_postgres(self) -> Iterator[Any]:
        from tests.support.postgres import PostgresServer

        with PostgresServer() as server:
            yield server

    @pytest.fixture
    def database_url(self, own_postgres: Any) -> str:
        url: str = own_postgres.create_database("t_" + uuid.uuid4().hex[:16])
        return url

    @pytest.mark.postgres
    async def test_every_route_is_503_and_the_pool_recovers(
        self, alice: Caller, own_postgres: Any
    ) -> None:
        kept = await start(alice, b"abc")
        own_postgres.halt()
        file_url = f"/api/v1/files/{kept['id']}"
        answers = [
            await alice.get("/api/v1/files"),
            await alice.get(file_url),
            await alice.post("/api/v1/uploads", json=upload_request(b"x")),
            await alice.post(f"/api/v1/uploads/{kept['id']}/complete"),
            await alice.delete(f"/api/v1/uploads/{kept['id']}"),
            await alice.delete(file_url),
            await alice.get("/s3/params", params={"filename": "a.txt", "type": "text/plain"}),
            await alice.http.post("/api/v1/session", json={"api_key": alice.key}),
        ]
        for answer in answers:
            assert_unavailable(answer, "unreachable")
        await assert_not_ready(alice.http, "unreachable")

        own_postgres.resume()
        await assert_ready(alice.http)
        assert (await alice.get(file_url)).json()["status"] == "pending"
        await start(alice, b"again")


class TestPostgresReadOnly:
    @pytest.fixture
    def database_url(self, postgres_server: Any) -> Iterator[str]:
        with postgres_server.temporary_database() as url:
            yield url

    @pytest.mark.postgres
    async def test_writes_and_readiness_are_503_read_only(
        self, app: FastAPI, alice: Caller, postgres_server: Any, database_url: str
    ) -> None:
        kept = await start(alice, b"abc")
        name = database_url.rsplit("/", 1)[1]
        postgres_server.psql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        await app.state.engine.dispose()  # new sessions take the database's new default
        assert_unavailable(
            await alice.post("/api/v1/uploads", json=upload_request(b"x")), "read_only"
        )
        await assert_not_ready(alice.http, "read_only")
        postgres_server.psql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
        await app.state.engine.dispose()
        await assert_ready(alice.http)
        assert (await alice.get(f"/api/v1/files/{kept['id']}")).json()["status"] == "pending"
