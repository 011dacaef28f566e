"""``bigupload serve``: run the service."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from bigupload.cli.common import fail, first_line, settings_or_exit

if TYPE_CHECKING:
    from bigupload.config import Settings


async def _prepare(settings: Settings) -> str | None:
    """Migrate the registry; on the very first start, make the admin key and answer it."""
    from sqlalchemy.exc import IntegrityError

    from bigupload.auth import repository
    from bigupload.cli.registry import prepared_engine
    from bigupload.db import create_sessionmaker

    engine = await prepared_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            if await repository.count(session) == 0:
                _, clear = await repository.create(session, "admin", "admin")
                return clear
        return None
    except (repository.KeyExists, IntegrityError):
        return None  # a replica starting at the same time made it (and shows it)
    finally:
        await engine.dispose()


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8000]")] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes serving requests (one per core).")
    ] = 1,
) -> None:
    """Start the service (migrating the registry first)."""
    settings = settings_or_exit(host=host, port=port)
    if settings.metrics:
        # Before anything makes a metric, and before any worker process starts: every one
        # of them writes its values there, and /metrics in any of them sums them.
        from bigupload.metrics.collect import prepare_multiprocess

        try:
            prepare_multiprocess(settings)
        except OSError as exc:
            fail(f"cannot use the metrics directory: {first_line(exc)}")

    import asyncio

    import uvicorn  # the web stack loads only for the command that serves
    from sqlalchemy.exc import DBAPIError, OperationalError

    from bigupload.app import create_app, settle_garbage_collector
    from bigupload.cli.http_protocol import BoundedHttpToolsProtocol
    from bigupload.cli.registry import describe
    from bigupload.config import ConfigError
    from bigupload.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        admin_key = asyncio.run(_prepare(settings))
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(f"cannot use the database: {first_line(exc)}")
    try:
        app = create_app(settings)
    except ConfigError as exc:
        fail(str(exc), code=2)
    except OSError as exc:
        fail(f"cannot use the data directory {settings.data_dir}: {first_line(exc)}")
    url = settings.effective_public_url
    typer.echo(f"bigupload {settings.storage} store, registry {describe(settings)}", err=True)
    if admin_key:
        typer.echo("", err=True)
        typer.echo("First start: an admin API key was created. It is shown only once:", err=True)
        typer.echo(f"    {admin_key}", err=True)
        typer.echo("", err=True)
    typer.echo(f"listening on {url}  (API docs: {url}/docs)", err=True)
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
        "server_header": False,
        "proxy_headers": False,
        # Reads at most MAX_HEAD_BYTES of a request's line and headers (see request_head).
        "http": BoundedHttpToolsProtocol,
    }
    if workers == 1:
        settle_garbage_collector()
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    # Each worker process builds its own app from the environment, flags included.
    os.environ["BIGUPLOAD_HOST"] = settings.host
    os.environ["BIGUPLOAD_PORT"] = str(settings.port)
    uvicorn.run("bigupload.app:worker_app", factory=True, workers=workers, **options)  # type: ignore[arg-type]
