"""Shared fixtures: real databases (SQLite, PostgreSQL), real stores (local, S3 over HTTP), the app.

The API suite runs once per database: every test that uses ``app`` (or ``client``) runs on SQLite
and on a throwaway PostgreSQL server. The schema is always built by the migrations.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bigupload import clock, migrate
from bigupload.app import create_app
from bigupload.auth import repository as keys
from bigupload.config import Settings, load_settings
from bigupload.db import create_engine
from bigupload.storage.base import Storage
from bigupload.storage.local import LocalStorage
from bigupload.storage.s3 import S3Storage, build_client
from tests.support.clock import Clock
from tests.support.moto import MotoServer, s3_client

SECRET = "test-secret-" + "x" * 40
TEST_BASE_URL = "http://testserver"

# boto3 reads credentials from the environment: give it fake ones, never a developer's real ones.
os.environ["AWS_ACCESS_KEY_ID"] = "test"
os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_SESSION_TOKEN", None)
for _name in list(os.environ):
    if _name.startswith("BIGUPLOAD_"):
        del os.environ[_name]


# -- servers (one per session) -------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    from tests.support.postgres import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def strict_s3() -> Iterator[Any]:
    """LocalStack: the local S3 server that enforces what AWS enforces on presigned URLs."""
    from tests.support.localstack import LocalStackServer

    with LocalStackServer(stop_timeout=3) as server:  # its data is throwaway
        yield server


# -- databases ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    with server.temporary_database() as url:
        yield url


# -- stores -----------------------------------------------------------------------------------


def make_bucket(client: Any) -> str:
    name = "bu-" + uuid.uuid4().hex[:20]
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store", public_url=TEST_BASE_URL, secret=SECRET)


@pytest.fixture
def moto_store(moto_server: MotoServer) -> S3Storage:
    client = build_client(endpoint_url=moto_server.endpoint_url, region="us-east-1")
    return S3Storage(client, make_bucket(s3_client(moto_server.endpoint_url)))


@pytest.fixture
def strict_store(strict_s3: Any) -> S3Storage:
    client = build_client(endpoint_url=strict_s3.endpoint_url, region="us-east-1")
    return S3Storage(client, make_bucket(s3_client(strict_s3.endpoint_url)))


# -- the app ----------------------------------------------------------------------------------


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "secret_key": SECRET,
        "public_url": TEST_BASE_URL,
        "rate_limit": "off",  # tests/api/test_rate_limit.py turns it on
        "run_jobs": False,  # tests drive the job runner themselves
        "local_storage_events": False,  # tests/storage_events turn it on
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change the app's settings."""
    return {}


@pytest.fixture
def storage(local_store: LocalStorage) -> Storage:
    """The store behind ``app``; override to run a module against another adapter (e.g. with
    ``LOCAL_AND_MOTO``)."""
    return local_store


#: Parameters of a module's own ``storage`` fixture, to be given to :func:`store_named`.
LOCAL_AND_MOTO = ("local", "s3-moto")


def store_named(request: pytest.FixtureRequest) -> Storage:
    """The store a parametrised ``storage`` fixture asks for (``local`` or ``s3-moto``)."""
    name = {"local": "local_store", "s3-moto": "moto_store"}[request.param]
    store: Storage = request.getfixturevalue(name)
    return store


@pytest.fixture
async def app(
    tmp_path: Path, database_url: str, storage: Storage, settings_overrides: dict[str, Any]
) -> AsyncIterator[FastAPI]:
    settings = make_settings(tmp_path, database_url, **settings_overrides)
    engine = create_engine(settings.effective_database_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    application = create_app(settings, storage=storage)
    yield application
    await application.state.engine.dispose()


@dataclass
class Caller:
    """An HTTP client that speaks as one API key's owner."""

    http: httpx.AsyncClient
    key: str
    owner: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.get(url, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.post(url, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    async def put(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.put(url, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.delete(url, headers={**self.auth, **kw.pop("headers", {})}, **kw)


async def make_key(app: FastAPI, name: str, owner: str | None = None) -> str:
    async with app.state.sessionmaker() as session, session.begin():
        _, clear = await keys.create(session, name, owner or name)
    return clear


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as client:
        yield client


@pytest.fixture
async def alice(app: FastAPI, http: httpx.AsyncClient) -> Caller:
    return Caller(http, await make_key(app, "alice"), "alice")


@pytest.fixture
async def bob(app: FastAPI, http: httpx.AsyncClient) -> Caller:
    return Caller(http, await make_key(app, "bob"), "bob")


@pytest.fixture
def test_clock() -> Iterator[Clock]:
    """``bigupload.clock`` under the test's control, restored afterwards."""
    source = Clock(datetime.now(UTC).replace(microsecond=0))
    clock.set_clock(source)
    try:
        yield source
    finally:
        clock.set_clock(None)


@pytest.fixture
async def store_http(alice: Caller, storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    """A client that follows the store's URLs: the app itself for the local store."""
    if isinstance(storage, LocalStorage):
        yield alice.http
    else:
        async with httpx.AsyncClient() as client:
            yield client
