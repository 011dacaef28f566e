"""``bigupload keys``: make, list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from bigupload.auth.keys import reserved_owner, valid_email, valid_name
from bigupload.cli.common import fail, settings_or_exit

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A unique name for the key.")],
    owner: Annotated[
        str | None, typer.Option(help="Whose files the key reaches (default: the name).")
    ] = None,
    email: Annotated[
        str | None,
        typer.Option(help="Where to e-mail notifications about the owner's files."),
    ] = None,
) -> None:
    """Make a key and print it, alone, on standard output. It is shown only this once."""
    owner = owner or name
    for label, value in (("name", name), ("owner", owner)):
        if not valid_name(value):
            fail(f"the {label} must be 1-64 letters, digits, '.', '_' or '-'", code=2)
    if email is not None and not valid_email(email):
        fail(f"{email!r} is not an e-mail address such as alice@example.com", code=2)
    from bigupload.auth import repository
    from bigupload.cli.registry import run_with_session

    settings = settings_or_exit()
    if reserved_owner(owner, settings.jwt_owner_prefix):
        fail(
            f"owners beginning with {settings.jwt_owner_prefix!r} are JWT subjects' "
            "(BIGUPLOAD_JWT_OWNER_PREFIX): choose another owner",
            code=2,
        )

    async def work(session: object) -> str:
        try:
            _, clear = await repository.create(session, name, owner, email=email)  # type: ignore[arg-type]
        except repository.KeyExists:
            fail(f"a key named {name!r} exists already")
        return clear

    typer.echo(run_with_session(settings, work))


@app.command("list")
def list_keys() -> None:
    """List keys (never their secret part)."""
    from rich.console import Console
    from rich.table import Table

    from bigupload.auth import repository
    from bigupload.cli.registry import run_with_session

    settings = settings_or_exit()
    keys = run_with_session(settings, repository.list_all)
    table = Table("name", "owner", "prefix", "created", "revoked", "email")
    for key in keys:
        table.add_row(
            key.name,
            key.owner,
            key.prefix + "…",
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "",
            key.email or "",
        )
    console = Console()
    # Piped or redirected, the table is as wide as it needs: no cell is wrapped or cut.
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(width=max(console.width, needed))
    console.print(table)


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: it stops working at once."""
    from bigupload.auth import repository
    from bigupload.cli.registry import run_with_session

    settings = settings_or_exit()

    async def work(session: object) -> bool:
        return await repository.revoke(session, name)  # type: ignore[arg-type]

    if not run_with_session(settings, work):
        fail(f"no active key named {name!r}")
    typer.echo(f"revoked {name}", err=True)
