"""What a registry failure means: unavailable for now (503), out of disk (507), or a bug (500).

A registry that is locked by another process, read-only, out of disk or unreachable is an outage
the client can wait out: it gets 503 ``database_unavailable`` (507 ``insufficient_storage`` for
a full disk) with ``Retry-After``, and the transaction was rolled back. Every other database
error (no such table, a constraint, a syntax error) is the application's and stays a 500.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bigupload.db import DatabaseUnreachable
from bigupload.errors import error_body

log = logging.getLogger("bigupload.errors")

#: ``busy``: every pooled connection stayed in use for the whole wait.
Problem = Literal["locked", "read_only", "unreachable", "disk_full", "busy"]

#: Free bytes under which the registry's disk counts as full (SQLite's log grows in pages).
MIN_FREE_BYTES = 1024 * 1024

RETRY_AFTER_SECONDS = {"disk_full": 60}
DEFAULT_RETRY_AFTER_SECONDS = 5

# SQLite's primary result codes (the low byte of the extended code).
_SQLITE_PROBLEMS: dict[int, Problem] = {
    5: "locked",  # SQLITE_BUSY: another connection holds the lock past the busy timeout
    6: "locked",  # SQLITE_LOCKED
    8: "read_only",  # SQLITE_READONLY
    10: "unreachable",  # SQLITE_IOERR
    13: "disk_full",  # SQLITE_FULL
    15: "locked",  # SQLITE_PROTOCOL
}
_SQLITE_CANTOPEN = 14

# PostgreSQL's SQLSTATEs (and classes) that mean "not now", not "wrong".
_PG_STATES: dict[str, Problem] = {
    "53100": "disk_full",
    "25006": "read_only",  # read_only_sql_transaction: a standby, or a read-only server
    "55P03": "locked",  # lock_not_available
    "53300": "busy",  # too_many_connections
    "57P01": "unreachable",  # admin_shutdown
    "57P02": "unreachable",  # crash_shutdown
    "57P03": "unreachable",  # cannot_connect_now: starting up or shutting down
}
_PG_CLASSES: dict[str, Problem] = {"08": "unreachable"}  # connection exceptions


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite registry URL; ``None`` for other databases and in-memory ones."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def read_only(path: Path) -> bool:
    """Whether the registry file at ``path`` cannot be written: a read-only mount (which stops
    root too), or, for other users, a file or directory without write permission."""
    directory = path.parent
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    if os.geteuid() == 0:
        return False
    return not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK))


def disk_full(path: Path) -> bool:
    """Whether the disk of the registry file at ``path`` has (nearly) no room left."""
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None]
        todo += [current.__cause__, current.__context__]


def problem_of(exc: BaseException, registry_file: Path | None = None) -> Problem | None:
    """What ``exc`` says about the registry, or ``None`` if it is not an outage (a bug).

    ``registry_file`` is the SQLite file, to tell a read-only one from a missing one.
    """
    for error in _chain(exc):
        if isinstance(error, DatabaseUnreachable):
            return "unreachable"
        if isinstance(error, PoolTimeout):
            return "busy"
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(error, sqlite3.Error) and isinstance(code, int):
            if code & 0xFF == _SQLITE_CANTOPEN:
                if registry_file is not None and read_only(registry_file):
                    return "read_only"
                return "unreachable"
            if code & 0xFF in _SQLITE_PROBLEMS:
                return _SQLITE_PROBLEMS[code & 0xFF]
            return None
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str) and len(state) == 5:
            return _PG_STATES.get(state) or _PG_CLASSES.get(state[:2])
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "unreachable"
    return None


_MESSAGES: dict[Problem, str] = {
    "locked": "the registry is locked by another process",
    "read_only": "the registry is read-only",
    "unreachable": "the registry cannot be reached",
    "disk_full": "the registry's disk is full",
    "busy": "every registry connection is in use",
}


def _answer(request: Request, problem: Problem) -> JSONResponse:
    if problem == "disk_full":
        code, status = "insufficient_storage", 507
    else:
        code, status = "database_unavailable", 503
    retry_after = RETRY_AFTER_SECONDS.get(problem, DEFAULT_RETRY_AFTER_SECONDS)
    message = f"{_MESSAGES[problem]}: nothing was changed; try again later"
    return JSONResponse(
        error_body(code, message, {"reason": problem}, path=request.url.path),
        status_code=status,
        headers={"Retry-After": str(retry_after)},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    registry_file = sqlite_path(request.app.state.settings.effective_database_url)
    problem = problem_of(exc, registry_file)
    if problem is None:
        raise exc  # the application's error: answered 500 and logged with its traceback
    log.warning(
        "%s %s: the registry is unavailable (%s: %s) request_id=%s",
        request.method,
        request.url.path,
        problem,
        exc.orig if isinstance(exc, DBAPIError) else exc,  # not the statement and its values
        getattr(request.state, "request_id", "-"),
    )
    return _answer(request, problem)


def install_database_error_handlers(app: FastAPI) -> None:
    for kind in (DBAPIError, PoolTimeout, DatabaseUnreachable, sqlite3.Error):
        app.add_exception_handler(kind, _database_error)
