"""``bigupload db``: the registry's schema."""

from __future__ import annotations

import typer

from bigupload.cli.common import fail, first_line, settings_or_exit

app = typer.Typer(help="Manage the registry's schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Apply every pending migration (making the registry if there is none)."""
    import asyncio

    from sqlalchemy.exc import DBAPIError, OperationalError

    from bigupload import migrate
    from bigupload.cli.registry import describe, prepared_engine

    settings = settings_or_exit()
    typer.echo(f"bigupload: registry {describe(settings)}", err=True)

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
    import asyncio

    from sqlalchemy.exc import DBAPIError, OperationalError

    from bigupload import migrate
    from bigupload.cli.registry import existing_registry
    from bigupload.db import create_engine

    settings = settings_or_exit()
    existing_registry(settings)  # reading must not create the file

    async def run() -> str | None:
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
