"""bigupload served for real over HTTP, on a store chosen by name, with one API key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bigupload import migrate
from bigupload.app import create_app
from bigupload.auth import repository as keys
from bigupload.config import Settings, load_settings
from bigupload.db import create_engine, create_sessionmaker
from tests.conftest import SECRET, make_bucket
from tests.support.live import LiveServer
from tests.support.moto import s3_client
from tests.support.net import free_port

#: The stores a live service can run on; LocalStack only where the marker allows it.
STORES = ["local", "s3-moto", pytest.param("s3-strict", marks=pytest.mark.strict_s3)]


@dataclass(frozen=True)
class Service:
    url: str
    api_key: str
    settings: Settings

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def prepare_registry(database_url: str, owner: str = "owner") -> str:
    """Migrate the registry and make one API key; answer the key."""
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    async with create_sessionmaker(engine)() as session, session.begin():
        _, clear = await keys.create(session, owner, owner)
    await engine.dispose()
    return clear


@contextmanager
def live_service(
    request: pytest.FixtureRequest, tmp_path: Path, store: str, **overrides: Any
) -> Iterator[Service]:
    port = free_port()
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "secret_key": SECRET,
        "port": port,
        "rate_limit": "off",
    }
    if store != "local":
        server = request.getfixturevalue("moto_server" if store == "s3-moto" else "strict_s3")
        values |= {
            "storage": "s3",
            "s3_endpoint_url": server.endpoint_url,
            "s3_region": "us-east-1",
            "s3_bucket": make_bucket(s3_client(server.endpoint_url)),
        }
    settings = load_settings(**(values | overrides))
    settings.data_dir.mkdir(parents=True)
    api_key = asyncio.run(prepare_registry(settings.effective_database_url))
    live = LiveServer(create_app(settings), port).start()
    try:
        yield Service(live.url, api_key, settings)
    finally:
        live.stop()
