"""What every command shares: settings and one-line failures.

It stays light: the client commands (``upload``, ``ls`` ...) import it, and they must start without
the server stack. What needs the database lives in :mod:`bigupload.cli.registry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from bigupload.config import Settings


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"bigupload: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def settings_or_exit(**overrides: object) -> Settings:
    from bigupload.config import ConfigError, load_settings

    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        fail(str(exc), code=2)


def first_line(exc: BaseException) -> str:
    """One line about ``exc`` (its driver error, if wrapped), even when its message is empty."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__
