"""``bigupload db``: the registry's schema."""

from __future__ import annotations

import asyncio

import typer
from sqlalchemy.exc import DBAPIError, OperationalError

from bigupload import migrate
from bigupload.cli.common import fail, prepared_engine, settings_or_exit
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
        fail(f"cannot migrate the database: {str(getattr(exc, 'orig', exc)).splitlines()[0]}")
    typer.echo(f"database at revision {revision}")


@app.command("current")
def current() -> None:
    """Show the schema's revision and the newest one this version knows."""
    settings = settings_or_exit()

    async def run() -> str | None:
        engine = create_engine(settings.effective_database_url)
        try:
            return await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(run())
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(f"cannot read the database: {str(getattr(exc, 'orig', exc)).splitlines()[0]}")
    typer.echo(f"current: {revision or 'none'}; newest: {migrate.head_revision()}")
