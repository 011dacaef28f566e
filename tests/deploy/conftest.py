"""What the deploy tests' processes share: a Redis server per module, a database per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.redis import RedisServer


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: Any) -> Iterator[str]:
    with postgres_server.temporary_database() as url:
        yield url
