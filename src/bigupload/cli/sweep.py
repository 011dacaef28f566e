"""``bigupload sweep``: expire and clean up once, now (``bigupload serve`` also does it on a
schedule)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bigupload.cli.common import fail, first_line, settings_or_exit


def sweep(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was done as one JSON object.")
    ] = False,
) -> None:
    """Expire stale uploads and unconfirmed files, abort orphan multipart uploads, and purge
    their bytes, once. Exits 1 if the store could not be reached."""
    import asyncio

    from sqlalchemy.exc import DBAPIError, OperationalError

    from bigupload.cli.registry import existing_registry
    from bigupload.cli.sweep_run import run
    from bigupload.config import ConfigError
    from bigupload.logs import configure_logging

    settings = settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    existing_registry(settings)
    try:
        outcome = asyncio.run(run(settings))
    except ConfigError as exc:
        fail(str(exc), code=2)
    except (OperationalError, DBAPIError) as exc:
        fail(f"cannot use the database: {first_line(exc)}")
    except OSError as exc:
        fail(f"cannot use the database or the store: {first_line(exc)}")
    typer.echo(json.dumps(outcome.as_dict()) if as_json else outcome.summary())
    if not outcome.ok:
        raise typer.Exit(1)
