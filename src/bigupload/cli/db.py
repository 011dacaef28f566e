"""``bigupload db``: the registry's schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from bigupload import migrate
from bigupload.cli.common import fail, first_line, prepared_engine, settings_or_exit
from bigupload.db import create_engine

app = typer.Typer(help="Manage the registry's schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Apply every pending migration."""
    settings = settings_or_exit()

    async def run() -> str | None:
        engine = await prepared_engine(settings)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(run())
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(f"cannot migrate the database: {first_line(exc)}")
    typer.echo(f"database at revision {revision}")


@app.command("current")
def current() -> None:
    """Show the schema's revision and the newest one this version knows."""
    settings = settings_or_exit()

    async def run() -> str | None:
        if _missing_sqlite_file(settings.effective_database_url):
            return None  # nothing to read, and reading must not create the file
        engine = create_engine(settings.effective_database_url)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(run())
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(f"cannot read the database: {first_line(exc)}")
    typer.echo(f"current: {revision or 'none'}; newest: {migrate.head_revision()}")


def _missing_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or "uri" in parsed.query:
        return False
    if parsed.database in (None, "", ":memory:"):
        return False
    return not Path(parsed.database).exists()
