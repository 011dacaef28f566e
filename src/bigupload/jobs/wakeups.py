"""Waking job runners when there is work: at once in this process, and by LISTEN/NOTIFY in all.

A transaction that queues jobs (:func:`bigupload.jobs.queue.enqueue`) or appends file status
events (the outbox the dispatcher reads) says so when it commits:

- to the runners of this process, after the commit (on every database);
- on PostgreSQL, to every process, by ``pg_notify`` on :data:`CHANNEL` inside the transaction
  itself: PostgreSQL delivers the notification on commit, and never for a rolled-back one.

Each runner on PostgreSQL keeps one connection of its own that LISTENs (:class:`Listener`); a
notification wakes it at once. Polling stays as the fallback, at a longer interval while the
listener is up. A lost listener connection is logged once and reconnected with backoff; once
it is back, the runner looks for work at once (it may have missed notifications meanwhile).

A notification names the process that sent it (``jobs,events@<origin>``); a listener skips its
own process's, whose runners the commit already woke.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from bigupload.db_errors import problem_of
from bigupload.files.models import FileEvent

log = logging.getLogger("bigupload.jobs")

#: The PostgreSQL channel every process listens on.
CHANNEL = "bigupload_jobs"
#: Payload: jobs were queued (or made due again).
JOBS = "jobs"
#: Payload: file status events were appended (work for the outbox dispatcher).
EVENTS = "events"
#: The listener connection's ``application_name`` (it is told apart in ``pg_stat_activity``).
APPLICATION_NAME = "bigupload-listener"

#: session.info: jobs were added in this session's transaction.
ENQUEUED = "bigupload.jobs.enqueued"
#: session.info: file events were added in this session's transaction.
EVENTS_ADDED = "bigupload.jobs.events_added"

BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0


class Wakeable(Protocol):
    def notified_from_any_thread(self, payload: str) -> None: ...


#: The started runners of this process.
_LOCAL: weakref.WeakSet[Any] = weakref.WeakSet()

#: This process, in the notifications it sends (a forked child is another process).
_origin = secrets.token_hex(8)


def _new_origin() -> None:
    global _origin
    _origin = secrets.token_hex(8)


os.register_at_fork(after_in_child=_new_origin)


def payload_of(*payloads: str) -> str:
    """The notification that announces ``payloads`` work, from this process."""
    return ",".join(payloads) + "@" + _origin


def register(runner: Wakeable) -> None:
    """Tell ``runner`` about every commit of this process that queues work."""
    _LOCAL.add(runner)


def unregister(runner: Wakeable) -> None:
    _LOCAL.discard(runner)


# -- what a transaction says when it commits ---------------------------------------------------


def _payloads(session: Session) -> list[str]:
    found = []
    if session.info.get(ENQUEUED):
        found.append(JOBS)
    if session.info.get(EVENTS_ADDED) or any(isinstance(o, FileEvent) for o in session.new):
        found.append(EVENTS)
    return found


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: UOWTransaction) -> None:
    if any(isinstance(item, FileEvent) for item in session.new):
        session.info[EVENTS_ADDED] = True


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    table = getattr(state.statement, "table", None)
    if state.is_insert and getattr(table, "name", None) == FileEvent.__tablename__:
        state.session.info[EVENTS_ADDED] = True


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    payloads = _payloads(session)
    if not payloads:
        return
    try:
        dialect = session.get_bind().dialect.name
    except Exception:  # no bind: nothing was written through this session
        return
    if dialect != "postgresql":
        return
    # One statement whatever the transaction added; delivered on commit.
    session.execute(_NOTIFY, {"channel": CHANNEL, "payload": payload_of(*payloads)})


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    payloads = _payloads(session)
    session.info.pop(ENQUEUED, None)
    session.info.pop(EVENTS_ADDED, None)
    wake_local(*payloads)


_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def notify_in(connection: Connection, *payloads: str) -> None:
    """For a transaction on a plain connection (no session, so no hooks): on PostgreSQL, say
    what it added to every process, on its commit. Call :func:`wake_local` after the commit."""
    if connection.dialect.name == "postgresql":
        connection.execute(_NOTIFY, {"channel": CHANNEL, "payload": payload_of(*payloads)})


def wake_local(*payloads: str) -> None:
    """Tell this process's runners that a commit added ``payloads`` work."""
    for payload in payloads:
        for runner in list(_LOCAL):
            runner.notified_from_any_thread(payload)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(ENQUEUED, None)
    session.info.pop(EVENTS_ADDED, None)


# -- listening ---------------------------------------------------------------------------------


def can_listen(engine: AsyncEngine) -> bool:
    """Whether :class:`Listener` works with ``engine``'s database and driver."""
    return engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg"


class Listener:
    """One connection that LISTENs on :data:`CHANNEL` and hands each payload to ``notify``.

    Connected, it checks the connection every ``check_interval`` seconds (a connection lost
    without a word, as across a network partition, shows then). Lost, it reconnects with
    exponential backoff; once connected again it hands over :data:`JOBS` and :data:`EVENTS`
    (notifications of the meantime are lost), as it does the first time.

    Notifications this process sent are skipped (its commits wake its runners directly),
    unless ``own_too``: then it hears them as another process would.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        notify: Callable[[str], None],
        *,
        name: str,
        check_interval: float,
        connect_timeout: float = 10.0,
        own_too: bool = False,
    ) -> None:
        if not can_listen(engine):
            raise ValueError("LISTEN needs PostgreSQL through asyncpg")
        self.engine = engine
        self.notify = notify
        self.name = name
        self.check_interval = check_interval
        self.connect_timeout = connect_timeout
        self.own_too = own_too
        #: Connections made so far (for tests and logs).
        self.connections = 0
        self._up = asyncio.Event()
        self._down_since_logged = False
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random()  # noqa: S311 (jitter, not secrets)

    @property
    def up(self) -> bool:
        """Whether the connection is listening now."""
        return self._up.is_set()

    async def wait_up(self) -> None:
        await self._up.wait()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"listener {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _connect(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]

        _, options = self.engine.dialect.create_connect_args(self.engine.url)
        for key in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            options.pop(key, None)
        server_settings = dict(options.pop("server_settings", None) or {})
        server_settings["application_name"] = APPLICATION_NAME
        options.setdefault("timeout", self.connect_timeout)
        return await asyncpg.connect(**options, server_settings=server_settings)

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            connection: Any = None
            made = self.connections
            try:
                connection = await self._connect()
                await self._listen(connection)
            except asyncio.CancelledError:
                self._up.clear()
                if connection is not None:
                    connection.terminate()
                raise
            except Exception as exc:
                self._up.clear()
                self._lost(exc)
                if connection is not None:
                    connection.terminate()
            if self.connections > made:  # it was listening: the backoff starts again
                delay = BACKOFF_MIN
            await asyncio.sleep(delay * self._random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _listen(self, connection: Any) -> None:
        """LISTEN on ``connection`` until it is lost (then raise)."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _c: lost.set())
        await connection.add_listener(CHANNEL, self._received)
        self.connections += 1
        self._connected()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self.check_interval)
            if lost.is_set() or connection.is_closed():
                raise ConnectionResetError("the server closed the listener's connection")
            await connection.fetchval("SELECT 1", timeout=self.connect_timeout)

    def _received(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        kinds, _, origin = payload.partition("@")  # "jobs", "events" or "jobs,events"
        if origin == _origin and not self.own_too:
            return
        for each in kinds.split(","):
            self.notify(each)

    def _connected(self) -> None:
        self._up.set()
        if self._down_since_logged:
            self._down_since_logged = False
            log.info("job runner %s: listening for new jobs again", self.name)
        for payload in (JOBS, EVENTS):  # what was notified while not listening
            self.notify(payload)

    def _lost(self, exc: BaseException) -> None:
        if self._down_since_logged:
            return
        self._down_since_logged = True
        problem = problem_of(exc)
        log.warning(
            "job runner %s: not listening for new jobs (%s); polling until it reconnects",
            self.name,
            problem or f"{type(exc).__name__}: {exc}",
        )
