"""``bigupload ls``, ``info`` and ``rm``: find, inspect and delete files on a server."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from bigupload.cli.common import fail
from bigupload.cli.remote import EXIT_USAGE, ApiKey, Retries, Url, Verbose, connect, reported

Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
STATUSES = ("pending", "uploaded", "processing", "completed", "failed", "expired", "aborted")


def ls(
    status: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Only files in this status (repeat for several): {', '.join(STATUSES)}.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Files to list at most.")] = 50,
    as_json: Json = False,
    url: Url = None,
    api_key: ApiKey = None,
    retries: Retries = 3,
    verbose: Verbose = False,
) -> None:
    """List your files, newest first: a table on a terminal, else one tab-separated line per
    file (id, status, size, created, filename)."""
    from bigupload.client import RetryPolicy

    unknown = sorted(set(status or ()) - set(STATUSES))
    if unknown:
        fail(f"--status: {', '.join(unknown)} is not one of {', '.join(STATUSES)}", code=EXIT_USAGE)
    client = connect(url, api_key, verbose=verbose, retries=RetryPolicy(retries=retries))
    with client, reported():
        files = list(client.list(status=status or None, limit=limit))
    if as_json:
        typer.echo(json.dumps([f.to_json() for f in files], indent=2))
        return
    if sys.stdout.isatty():
        from rich import box
        from rich.console import Console
        from rich.table import Column, Table

        from bigupload.client.units import format_size

        # An id is never cut (it is what the other commands take): on a narrow terminal the
        # date wraps and the name folds instead.
        table = Table(
            Column("id", no_wrap=True, min_width=36),
            Column("status", no_wrap=True),
            Column("size", no_wrap=True, justify="right"),
            Column("created", min_width=10),
            Column("filename", overflow="fold", min_width=8),
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
        )
        for f in files:
            created = f.created_at.strftime("%Y-%m-%d %H:%M") if f.created_at else ""
            table.add_row(f.id, f.status, format_size(f.size), created, f.filename)
        Console().print(table)
        return
    for f in files:
        created = f.created_at.isoformat() if f.created_at else ""
        size = "" if f.size is None else str(f.size)
        typer.echo("\t".join((f.id, f.status, size, created, f.filename)))


def info(
    file_id: Annotated[
        str, typer.Argument(help="The file's id, or its first 4+ hex digits.", show_default=False)
    ],
    as_json: Json = False,
    url: Url = None,
    api_key: ApiKey = None,
    retries: Retries = 3,
    verbose: Verbose = False,
) -> None:
    """Show what the server knows of one file."""
    from bigupload.client import RetryPolicy

    client = connect(url, api_key, verbose=verbose, retries=RetryPolicy(retries=retries))
    with client, reported():
        record = client.info(client.resolve(file_id))
    data = record.to_json()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    width = max(len(name) for name in data)
    for name, value in data.items():
        if value is None or value == {}:
            continue
        shown = json.dumps(value) if isinstance(value, dict) else str(value)
        typer.echo(f"{name:<{width}}  {shown}")


def rm(
    file_ids: Annotated[
        list[str],
        typer.Argument(
            help="The ids of the files to delete (or their first 4+ hex digits).",
            show_default=False,
        ),
    ],
    url: Url = None,
    api_key: ApiKey = None,
    retries: Retries = 3,
    verbose: Verbose = False,
) -> None:
    """Delete files: their stored bytes and their records."""
    from bigupload.client import RetryPolicy

    client = connect(url, api_key, verbose=verbose, retries=RetryPolicy(retries=retries))
    with client:
        for file_id in file_ids:
            with reported(file_id):
                whole = client.resolve(file_id)
                client.delete(whole)
            typer.echo(f"deleted {whole}", err=True)
