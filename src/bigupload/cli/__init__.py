"""The ``bigupload`` command."""

from __future__ import annotations

import typer

from bigupload.cli import db, files, keys, serve, storage, sweep, transfer, webhooks, worker

app = typer.Typer(
    name="bigupload",
    help="Move very large files into S3-compatible storage through pre-signed URLs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("sweep")(sweep.sweep)
app.command("upload")(transfer.upload)
app.command("download")(transfer.download)
app.command("ls")(files.ls)
app.command("info")(files.info)
app.command("rm")(files.rm)
app.add_typer(keys.app, name="keys")
app.add_typer(db.app, name="db")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(storage.app, name="storage")


def main() -> None:
    app()
