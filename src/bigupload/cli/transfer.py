"""``bigupload upload`` and ``bigupload download``: move files to and from a server."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated

import typer

from bigupload.cli.common import fail
from bigupload.cli.remote import (
    EXIT_AUTH,
    EXIT_USAGE,
    ApiKey,
    Bars,
    Retries,
    Url,
    Verbose,
    connect,
    describe,
    exit_code,
    interrupted,
    reported,
)


def upload(
    files: Annotated[list[Path], typer.Argument(help="The files to upload.", show_default=False)],
    url: Url = None,
    api_key: ApiKey = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Parts sent at once.")] = 8,
    part_size: Annotated[
        str | None,
        typer.Option(
            help="Part size to ask for, e.g. 64MiB (the server keeps it within S3's limits).",
            show_default=False,
        ),
    ] = None,
    content_type: Annotated[
        str | None,
        typer.Option(
            help="Media type of every file (default: guessed from each name).", show_default=False
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--no-resume",
            help="Go on with an interrupted upload of the same file, and keep this one "
            "resumable; --no-resume starts afresh and aborts the upload if interrupted.",
        ),
    ] = True,
    retries: Retries = 8,
    verbose: Verbose = False,
) -> None:
    """Upload files; print each file's id on stdout, one per line, in order.

    Interrupted (Ctrl-C, a crash, a reboot), the same command resumes where it stopped.
    """
    from bigupload.client import BigUploadError, RetryPolicy
    from bigupload.client.units import format_size, parse_size

    for path in files:
        problem = _unreadable(path)
        if problem:
            fail(f"{path}: {problem}", code=EXIT_USAGE)
    size_wanted = None
    if part_size is not None:
        try:
            size_wanted = parse_size(part_size)
        except ValueError as bad:
            fail(f"--part-size: {bad}", code=EXIT_USAGE)
        if size_wanted <= 0:
            fail("--part-size: must be positive", code=EXIT_USAGE)
    client = connect(
        url,
        api_key,
        verbose=verbose,
        concurrency=concurrency,
        part_size=size_wanted,
        retries=RetryPolicy(retries=retries),
    )
    rows: list[tuple[str, str, str, str]] = []
    failures: list[tuple[Path, BigUploadError | OSError]] = []
    with client:
        for path in files:
            try:
                with Bars() as bars:  # one per file, done before the id is printed
                    remote = client.upload(
                        path,
                        content_type=content_type,
                        resume=resume,
                        progress=bars.track(path.name, path.stat().st_size),
                    )
            except KeyboardInterrupt:
                hint = "run the same command again to resume" if resume else "upload aborted"
                interrupted(f"{path}: interrupted; {hint}")
            except (BigUploadError, OSError) as exc:
                if len(files) == 1 or exit_code(exc) == EXIT_AUTH:
                    fail(f"{path}: {describe(exc)}", code=exit_code(exc))
                failures.append((path, exc))
                rows.append((str(path), "-", "-", "failed"))
                continue
            typer.echo(remote.id)
            rows.append((str(path), remote.id, format_size(remote.size), remote.status))
    _summary(rows)
    for path, error in failures:
        typer.secho(f"bigupload: {path}: {describe(error)}", fg=typer.colors.RED, err=True)
    if failures:
        raise typer.Exit(exit_code(failures[0][1]))


def download(
    file_id: Annotated[
        str, typer.Argument(help="The file's id, or its first 4+ hex digits.", show_default=False)
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to save it: a path, or a directory (default: the file's own name "
            "in the current directory).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
    retries: Retries = 8,
    verbose: Verbose = False,
) -> None:
    """Download a file, checked against its recorded size and SHA-256; print its path."""
    from bigupload.client import RetryPolicy

    client = connect(url, api_key, verbose=verbose, retries=RetryPolicy(retries=retries))
    dest = output if output is not None else Path.cwd()
    with client, reported():
        record = client.info(client.resolve(file_id))
        with Bars() as bars:
            try:
                saved = client.download(
                    record.id,
                    dest,
                    overwrite=force,
                    progress=bars.track(record.filename, record.stored_size or record.size),
                )
            except FileExistsError as exc:
                fail(f"{exc.filename} exists; pass --force to replace it", code=EXIT_USAGE)
    typer.echo(str(saved))


def _unreadable(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return exc.strerror or "cannot be read"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def _summary(rows: list[tuple[str, str, str, str]]) -> None:
    if not rows:
        return
    from rich.console import Console
    from rich.table import Column, Table

    table = Table(
        Column("file", overflow="fold"),
        Column("id", no_wrap=True, min_width=36),
        Column("size", no_wrap=True, justify="right"),
        Column("status", no_wrap=True),
    )
    for row in rows:
        table.add_row(*row)
    Console(stderr=True).print(table)
