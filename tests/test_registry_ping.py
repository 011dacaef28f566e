"""The pool's pre-ping on PostgreSQL: one round trip per checkout, and a dead connection is
still replaced by a live one before a request uses it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from bigupload.db import create_engine

pytestmark = pytest.mark.postgres


@pytest.fixture
def url(postgres_server: Any) -> str:
    created: str = postgres_server.create_database("t_" + uuid.uuid4().hex[:16])
    return created


def count_calls(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """Record asyncpg's calls that each make a round trip to the server."""

    def counted(name: str) -> Callable[..., Any]:
        method = getattr(asyncpg.Connection, name)

        async def wrapper(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return await method(self, *args, **kwargs)

        return wrapper

    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval", "prepare"):
        monkeypatch.setattr(asyncpg.Connection, name, counted(name))


async def test_a_checkout_pings_in_one_round_trip(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:  # a new connection: not pinged
            await connection.execute(text("SELECT 1"))
        calls: list[str] = []
        count_calls(monkeypatch, calls)
        async with engine.connect():  # the pooled one: pinged
            pass
        assert calls == ["execute"]  # not BEGIN, the ping, ROLLBACK
    finally:
        await engine.dispose()


async def test_a_pooled_connection_whose_backend_died_is_replaced_at_checkout(
    url: str, postgres_server: Any
) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        postgres_server.psql(f"SELECT pg_terminate_backend({int(pid)}, 10000)")  # waits for it
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await engine.dispose()
