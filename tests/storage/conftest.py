"""Fixtures of the storage suite: one ``store`` per adapter, and an HTTP client that reaches it.

``store`` runs a test once per adapter: ``local`` (a directory, served by bigupload's own
``/store`` endpoints), ``s3-moto`` (permissive) and ``s3-strict`` (LocalStack, which enforces
what AWS enforces on presigned URLs). A test that needs the store to *refuse* something narrows
the adapters with :data:`ENFORCING`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime

import httpx
import pytest

from bigupload import clock
from bigupload.storage.base import Storage
from bigupload.storage.local import LocalStorage
from tests.storage.helpers import http_for

ADAPTERS = ["local", "s3-moto", pytest.param("s3-strict", marks=pytest.mark.strict_s3)]

#: The adapters that refuse a request that breaks what its URL was signed for. moto enforces
#: nothing (signature, expiry, length, type, checksum), so refusal tests never run on it.
ENFORCING = pytest.mark.parametrize(
    "store", ["local", pytest.param("s3-strict", marks=pytest.mark.strict_s3)], indirect=True
)

_FIXTURES = {"local": "local_store", "s3-moto": "moto_store", "s3-strict": "strict_store"}


@pytest.fixture(params=ADAPTERS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    adapter: Storage = request.getfixturevalue(_FIXTURES[request.param])
    yield adapter
    await adapter.close()


@pytest.fixture
def adapter(request: pytest.FixtureRequest) -> str:
    """The name of the adapter behind ``store``: ``local``, ``s3-moto`` or ``s3-strict``."""
    name: str = request.node.callspec.params["store"]
    return name


@pytest.fixture
async def http_for_store(store: Storage) -> AsyncIterator[httpx.AsyncClient]:
    """A client that can follow ``store``'s presigned URLs."""
    async with http_for(store) as client:
        yield client


@pytest.fixture
async def local_http(local_store: LocalStorage) -> AsyncIterator[httpx.AsyncClient]:
    async with http_for(local_store) as client:
        yield client


@pytest.fixture
def new_key() -> Callable[[str], str]:
    """A fresh key per call, shaped like the service's own (LocalStack needs fresh keys)."""

    def make(name: str = "object") -> str:
        return f"uploads/{uuid.uuid4().hex}/2026/11/{name}"

    return make


@pytest.fixture
def set_clock() -> Iterator[Callable[[datetime], None]]:
    """Freeze ``bigupload.clock`` at a given time; the system clock is restored afterwards."""

    def freeze(moment: datetime) -> None:
        clock.set_clock(lambda: moment)

    try:
        yield freeze
    finally:
        clock.set_clock(None)
