"""The registry's readiness: a real write-lock probe, bounded by the registry's timeouts."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bigupload.db_errors import disk_full, problem_of, read_only, sqlite_path


async def probe(engine: AsyncEngine, url: str) -> str:
    """``ok``, or ``error: <problem>`` (``locked``, ``read_only``, ``unreachable``,
    ``disk_full``, ``busy``, else the error's type).

    On SQLite the probe takes the write lock (``BEGIN IMMEDIATE``, as every transaction does)
    and rolls back: it fails when another process holds the lock past the busy timeout, or the
    file cannot be written; a disk with (nearly) no room left is reported too. On PostgreSQL it
    asks the server, and reports a standby or a read-only server.
    """
    registry_file = sqlite_path(url)
    try:
        async with engine.connect() as connection:
            if registry_file is None:
                row = (
                    await connection.execute(
                        text("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
                    )
                ).one()
                writable = not row[0] and row[1] == "off"
            else:
                await connection.execute(text("SELECT 1"))
                writable = not read_only(registry_file)
            await connection.rollback()
    except Exception as exc:
        problem = problem_of(exc, registry_file)
        return f"error: {problem or type(exc).__name__}"
    if not writable:
        return "error: read_only"
    if registry_file is not None and disk_full(registry_file):
        return "error: disk_full"
    return "ok"
