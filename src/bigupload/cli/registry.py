"""The registry the admin commands work on: found (never made by mistake), migrated, used.

Imported only inside the commands that need it: it loads SQLAlchemy and Alembic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bigupload import migrate
from bigupload.cli.common import fail, first_line
from bigupload.config import Settings
from bigupload.db import create_engine, create_sessionmaker

T = TypeVar("T")

EXIT_USAGE = 2


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, or ``None`` (another database, in memory, or a URI)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or "uri" in parsed.query:
        return None
    if parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def describe(settings: Settings) -> str:
    """The registry, for people: a SQLite file's absolute path, or the URL without its password."""
    url = settings.effective_database_url
    path = sqlite_file(url)
    if path is not None:
        return str(path)
    parsed = make_url(url)
    return parsed.render_as_string(hide_password=True) if parsed.password else str(parsed)


def existing_registry(settings: Settings) -> None:
    """Say on stderr which registry this command uses; refuse (exit 2) if it is a SQLite file
    that does not exist, rather than making a second, empty registry next to the real one."""
    path = sqlite_file(settings.effective_database_url)
    if path is not None and not path.exists():
        fail(
            f"no registry at {path}: run `bigupload serve` or `bigupload db upgrade` to make "
            "one, or point at the server's with BIGUPLOAD_DATA_DIR (or BIGUPLOAD_DATABASE_URL)",
            code=EXIT_USAGE,
        )
    typer.echo(f"bigupload: registry {describe(settings)}", err=True)


async def prepared_engine(settings: Settings) -> AsyncEngine:
    """An engine on a registry whose schema is at the newest migration."""
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.effective_database_url)
    await migrate.upgrade(engine)
    return engine


def run_with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction on the existing registry; database failures
    become one line."""
    existing_registry(settings)

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
        fail(f"cannot use the database: {first_line(exc)}")
