"""What every command shares: settings, a registry at the current schema, one-line failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import typer
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bigupload import migrate
from bigupload.config import ConfigError, Settings, load_settings
from bigupload.db import create_engine, create_sessionmaker

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"bigupload: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings_or_exit(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        fail(str(exc), code=2)


def first_line(exc: BaseException) -> str:
    """One line about ``exc`` (its driver error, if wrapped), even when its message is empty."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _database_problem(exc: Exception) -> str:
    return f"cannot use the database: {first_line(exc)}"


async def prepared_engine(settings: Settings) -> AsyncEngine:
    """An engine on a registry whose schema is at the newest migration."""
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url)
    await migrate.upgrade(engine)
    return engine


def run_with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction; database failures become one line."""

    async def runner() -> T:
        engine = await prepared_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(runner())
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(_database_problem(exc))
