"""Named leases: whoever holds one until its end does the named work, in one process at a time.

A lease is a row in ``leases``. Taking it is one conditional write in the caller's transaction:
update the row if it has expired or is already ours, else insert it if there is none. Two
processes racing for it cannot both win: on PostgreSQL the second update waits for the first and
then no longer matches, and the second insert meets the first's primary key; on SQLite writers
are serialised (``BEGIN IMMEDIATE``). The caller commits.

:func:`holding` does a piece of work under a lease; :func:`keep_alive` renews a lease (a
named one, or a job's) while work goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bigupload import clock
from bigupload.jobs.models import Lease

log = logging.getLogger("bigupload.jobs")
T = TypeVar("T")


async def acquire(session: AsyncSession, name: str, holder: str, seconds: float) -> bool:
    """Take (or extend) lease ``name`` for ``holder`` until ``seconds`` from now.

    ``True`` if ``holder`` holds it now: it was free, had expired, or was already theirs.
    """
    now = clock.now()
    until = now + timedelta(seconds=seconds)
    taken = await session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.until < now, Lease.holder == holder))
        .values(holder=holder, until=until)
    )
    if _rowcount(taken):
        return True
    dialect = session.bind.dialect.name if session.bind is not None else ""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    added = await session.execute(
        insert(Lease).values(name=name, holder=holder, until=until).on_conflict_do_nothing()
    )
    return bool(_rowcount(added))


async def release(session: AsyncSession, name: str, holder: str) -> bool:
    """Give lease ``name`` up, if ``holder`` holds it; ``True`` if it did."""
    released = await session.execute(
        delete(Lease).where(Lease.name == name, Lease.holder == holder)
    )
    return bool(_rowcount(released))


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def holding(
    sessionmaker: async_sessionmaker[AsyncSession],
    name: str,
    holder: str,
    seconds: float,
    work: Callable[[], Awaitable[T]],
) -> tuple[bool, T | None]:
    """Take lease ``name`` for ``seconds`` and do ``work`` holding it (renewed every third of
    ``seconds`` while it runs); ``(False, None)`` without doing it if someone else holds it.

    The lease is not released afterwards: it lasts its time, so nobody else does the same work
    again within ``seconds``.
    """

    async def take() -> bool:
        async with sessionmaker() as session, session.begin():
            return await acquire(session, name, holder, seconds)

    if not await take():
        return False, None
    stopped = asyncio.Event()
    keeper = asyncio.create_task(
        keep_alive(
            stopped,
            seconds / 3,
            take,
            lambda: log.warning("lost lease %s while holding it", name),
            f"lease {name}",
        )
    )
    try:
        result = await work()
    except BaseException:
        keeper.cancel()
        raise
    stopped.set()
    await keeper
    return True, result


async def keep_alive(
    stopped: asyncio.Event,
    interval: float,
    renew: Callable[[], Awaitable[bool]],
    lost: Callable[[], None],
    what: str,
) -> None:
    """Every ``interval`` seconds until ``stopped`` is set, ``renew()``; once it answers
    ``False``, call ``lost()`` and stop. A failure to renew is logged and tried again."""
    while True:
        try:
            await asyncio.wait_for(stopped.wait(), interval)
            return
        except TimeoutError:
            pass
        try:
            kept = await renew()
        except Exception:
            log.warning("could not extend %s", what, exc_info=True)
            continue
        if not kept:
            lost()
            return
