"""The ``bigupload`` command."""

from __future__ import annotations

import typer

from bigupload.cli import db, keys, serve

app = typer.Typer(
    name="bigupload",
    help="Move very large files into S3-compatible storage through pre-signed URLs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.add_typer(keys.app, name="keys")
app.add_typer(db.app, name="db")


def main() -> None:
    app()
