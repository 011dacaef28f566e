"""What the commands that talk to a server share: its URL and key, errors, exit codes, output.

Exit codes of ``upload``, ``download``, ``ls``, ``info`` and ``rm``:

====  ====================================================================================
0     done
1     a transfer or server failure (network, store, 5xx, a refused or conflicting request)
2     usage or configuration (no URL or key, a missing local file, a destination that exists,
      a short id that begins several ids)
3     authentication (no valid API key, or a request it does not allow)
4     not found (no such file, or not one of yours; no id begins with the short id given)
130   interrupted (Ctrl-C); an interrupted upload resumes when the same command is run again
====  ====================================================================================

Standard output carries only results (file ids, paths, listings); progress, summaries and
errors go to standard error, so the output can be piped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from bigupload.cli.common import fail

if TYPE_CHECKING:
    from bigupload.client import Client
    from bigupload.client.progress import Progress

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130

URL_ENV = "BIGUPLOAD_URL"
KEY_ENV = "BIGUPLOAD_API_KEY"

Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar=URL_ENV,
        show_envvar=True,
        help="The server, e.g. http://127.0.0.1:8000.",
        show_default=False,
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar=KEY_ENV,
        show_envvar=True,
        help="Your API key (prefer the environment variable: flags show in process lists).",
        show_default=False,
    ),
]
Retries = Annotated[
    int, typer.Option(min=0, max=100, help="Times a failed request is tried again.")
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Tell each retry on stderr.")]


class _Stderr(logging.Handler):
    """Log lines on whatever ``sys.stderr`` is now (rich swaps it while a bar is shown)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"bigupload: {self.format(record)}\n")
        except Exception:  # logging must never break the transfer
            self.handleError(record)


def connect(url: str | None, api_key: str | None, *, verbose: bool = False, **kw: Any) -> Client:
    """A client for the server, or a one-line usage error."""
    from bigupload.client import Client

    if not url:
        fail(f"no server given: pass --url or set {URL_ENV}", code=EXIT_USAGE)
    if not api_key:
        fail(f"no API key given: pass --api-key or set {KEY_ENV}", code=EXIT_USAGE)
    log = logging.getLogger("bigupload.client")
    if verbose and not log.handlers:
        log.addHandler(_Stderr())
        log.setLevel(logging.INFO)
    try:
        return Client(url, api_key, **kw)
    except ValueError as exc:
        fail(str(exc), code=EXIT_USAGE)


def interrupted(message: str) -> NoReturn:
    """Ctrl-C: say so and end the process now, with 130.

    What is worth keeping (an upload's resume state) was saved before the interrupt reached
    here. Worker threads may still sit in a network call (up to the client's timeout) or in a
    wait between attempts; a normal exit would join the thread pools first and close the
    connections they hold, so the process ends without waiting for any of them.
    """
    typer.secho(f"bigupload: {message}", fg=typer.colors.RED, err=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT_INTERRUPTED)


def exit_code(exc: BaseException) -> int:
    from bigupload.client.errors import AmbiguousIdError, AuthError, NotFoundError

    if isinstance(exc, AmbiguousIdError):
        return EXIT_USAGE
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, FileExistsError | FileNotFoundError | IsADirectoryError):
        return EXIT_USAGE
    return EXIT_FAILURE


def describe(exc: BaseException) -> str:
    """One line about a failure."""
    from bigupload.client.errors import AuthError

    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or type(exc).__name__
        return f"{exc.filename}: {reason}"
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    if isinstance(exc, AuthError) and exc.status == 401:
        text += f" (check --api-key or {KEY_ENV})"
    return text


@contextmanager
def reported(what: str = "") -> Iterator[None]:
    """Turn the client's failures into one line on stderr and the documented exit code."""
    from bigupload.client.errors import BigUploadError

    prefix = f"{what}: " if what else ""
    try:
        yield
    except KeyboardInterrupt:
        interrupted(f"{prefix}interrupted")
    except (BigUploadError, OSError) as exc:
        fail(prefix + describe(exc), code=exit_code(exc))


def interactive() -> bool:
    return sys.stderr.isatty()


class Bars:
    """A rich progress bar per transfer on stderr, or nothing when stderr is not a terminal."""

    def __init__(self) -> None:
        self.progress: Any = None
        if interactive():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

            self.progress = Progress(
                TextColumn("{task.description}", style="bold"),
                BarColumn(),
                DownloadColumn(binary_units=True),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[eta]}"),
                console=Console(stderr=True),
                transient=False,
                redirect_stdout=False,  # results stay on stdout, wherever it goes
            )

    def __enter__(self) -> Bars:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def track(self, name: str, total: int | None) -> Any:
        """A progress callback showing one bar, or ``None``."""
        if self.progress is None:
            return None
        from bigupload.client.units import format_size

        task = self.progress.add_task(name, total=total, rate="", eta="")

        def update(p: Progress) -> None:
            left = p.total - p.bytes_done
            eta = f"ETA {_duration(left / p.rate)}" if p.rate > 0 and left > 0 else ""
            rate = f"{format_size(p.rate)}/s" if p.rate > 0 else ""
            self.progress.update(task, completed=p.bytes_done, total=p.total, rate=rate, eta=eta)

        return update


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
