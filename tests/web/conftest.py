"""What the web tests share: a client of an app made with the settings a test gives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bigupload.app import create_app
from bigupload.storage.local import LocalStorage
from tests.conftest import TEST_BASE_URL, make_settings

PageClient = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def page_client(tmp_path: Path, local_store: LocalStorage) -> PageClient:
    """A client of an app with the given settings (the page needs no registry)."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", **overrides)
        app = create_app(settings, storage=local_store)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as client:
                yield client
        finally:
            await app.state.engine.dispose()

    return make
