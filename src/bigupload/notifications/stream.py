"""``GET /events``: server-sent events of the caller's files' status changes.

Each event of the ``file_events`` table whose owner is the caller is sent once, in id order::

    id: 42
    event: file.completed
    data: {"event_id": 42, "file_id": "...", "from_status": "processing",
           "to_status": "completed", "reason": null, "at": "2026-01-31T12:00:00Z",
           "file": {...the file as it is now, or null once deleted}}

The stream opens with ``retry: 2000`` and the id it starts after, so a browser's
``EventSource`` that reconnects sends ``Last-Event-ID`` and misses nothing. Without one (nor
``?after=``) the stream starts at the newest event: only new events; ``?after=0`` replays the
caller's whole history. FastAPI sends a ``: ping`` comment after 15 s without an event.

The registry is polled in short sessions (never held while waiting: SQLite has one connection)
every :data:`POLL_INTERVAL` seconds; a commit of a file event in this process wakes its owner's
streams at once. A stream ends when its client goes away or the server is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from starlette.types import Message, Receive, Scope, Send

from bigupload import disconnects
from bigupload.auth.dependencies import PrincipalDep
from bigupload.dependencies import SessionDep
from bigupload.errors import COMMON_RESPONSES, InvalidRequest
from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.schemas import FileOut
from bigupload.json_body import ApiRoute
from bigupload.metrics.catalog import SSE_STREAMS
from bigupload.notifications.documents import event_type, iso_utc
from bigupload.request_head import HEAD_ANSWERS


class _StreamRoute(ApiRoute):
    """A stream whose client leaves while events are on their way makes FastAPI's stream fail
    with :class:`anyio.BrokenResourceError` (its relay has an event nobody will read): that is
    the client leaving, logged as one INFO line and counted, not an error."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        left = False

        async def watched() -> Message:
            nonlocal left
            message = await receive()
            left = left or message["type"] == "http.disconnect"
            return message

        try:
            await super().handle(scope, watched, send)
        except* anyio.BrokenResourceError:
            if not left:
                raise
            disconnects.disconnects_of(scope["app"]).event_streams += 1
            disconnects.note(scope, "while events were being sent")


router = APIRouter(tags=["events"], route_class=_StreamRoute)

#: Seconds between two reads of the registry when nothing woke the stream.
POLL_INTERVAL = 0.5
#: Events read (and sent) per read; a full batch is followed by another read at once.
BATCH = 100
#: Milliseconds a browser waits before it reconnects.
RETRY_MS = 2000
#: PostgreSQL numbers events when they are inserted, not when they are committed, so an event
#: may become visible after a higher-numbered one was sent. Events numbered below what was sent
#: are looked for again for this many seconds. (SQLite commits one writer at a time, in order.)
LATE_SECONDS = 10.0
_MAX_ID = 2**63 - 1  # event ids are 64-bit
#: Past this many events sent within :data:`LATE_SECONDS`, late events are not looked for.
LATE_MAX_TRACKED = 1000


# -- waking streams when this process commits a file event -------------------------------------


class Bell:
    """Wakes the streams of this process whose owner just had an event committed.

    A stream takes a :meth:`mark` before it reads, and after sending what it read waits for a
    ring since that mark: a commit between its read and its wait is not missed. Owners share
    :data:`_SLOTS` counters (a collision only costs a read); a stream is registered only while
    it waits, so one that is cancelled leaves nothing behind.
    """

    _SLOTS = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rings = [0] * self._SLOTS
        self._waiters: dict[asyncio.Event, tuple[asyncio.AbstractEventLoop, int]] = {}

    @classmethod
    def slot(cls, owner: str) -> int:
        return zlib.crc32(owner.encode()) % cls._SLOTS

    def mark(self, owner: str) -> int:
        with self._lock:
            return self._rings[self.slot(owner)]

    async def wait(self, owner: str, since: int, timeout: float) -> None:  # noqa: ASYNC109
        """Return once ``owner``'s bell rang after mark ``since``, or after ``timeout`` s."""
        slot = self.slot(owner)
        wake = asyncio.Event()
        with self._lock:
            if self._rings[slot] != since:
                return
            self._waiters[wake] = (asyncio.get_running_loop(), slot)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await wake.wait()
        finally:
            with self._lock:
                del self._waiters[wake]

    def listening(self) -> int:
        """How many streams of this process are waiting for a ring."""
        with self._lock:
            return len(self._waiters)

    def ring(self, owners: Collection[str] | None) -> None:
        """Wake the streams of ``owners`` (``None``: of everyone). Safe from any thread."""
        with self._lock:
            if owners is None:
                slots = set(range(self._SLOTS))
            else:
                slots = {self.slot(owner) for owner in owners}
            for slot in slots:
                self._rings[slot] += 1
            targets = [
                (loop, wake) for wake, (loop, slot) in self._waiters.items() if slot in slots
            ]
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, wake in targets:
            if loop is here:
                wake.set()
                continue
            with contextlib.suppress(RuntimeError):  # its loop is closed: the stream is gone
                loop.call_soon_threadsafe(wake.set)


BELL = Bell()

_OWNERS = "bigupload.stream.owners"  # session.info: owners of file events written, None: unknown


def _note(session: Session, owners: set[str] | None) -> None:
    if _OWNERS in session.info and session.info[_OWNERS] is None:
        return
    if owners is None:
        session.info[_OWNERS] = None
    else:
        session.info.setdefault(_OWNERS, set()).update(owners)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context: UOWTransaction) -> None:
    owners = {item.owner for item in session.new if isinstance(item, FileEvent)}
    if owners:
        _note(session, owners)


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    table = getattr(state.statement, "table", None)
    if not state.is_insert or getattr(table, "name", None) != FileEvent.__tablename__:
        return
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = state.parameters
    if isinstance(rows, Mapping):
        rows = [rows]
    owners = {row.get("owner") for row in rows or ()}
    known = all(isinstance(owner, str) for owner in owners) and bool(owners)
    _note(state.session, {str(owner) for owner in owners} if known else None)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if _OWNERS in session.info:
        BELL.ring(session.info.pop(_OWNERS))


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_OWNERS, None)


# -- knowing when to stop ---------------------------------------------------------------------


def server_stopping() -> bool:
    """Whether the uvicorn server of this process was told to stop (SIGINT or SIGTERM).

    uvicorn waits for open responses before it shuts down, and a stream never ends by itself;
    uvicorn's signal handler is a method of its server, which says whether it should exit.
    """
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))


# -- reading events ---------------------------------------------------------------------------


class _Position:
    """What a stream sent: the highest event id, and (PostgreSQL) the ids sent lately."""

    def __init__(self, start: int, *, watch_late: bool) -> None:
        self.position = start
        self.watch_late = watch_late
        self._marks: deque[tuple[float, int]] = deque([(time.monotonic(), start)])
        self.recent: set[int] = set()

    def floor(self) -> int:
        """The position :data:`LATE_SECONDS` ago: late events are looked for above it."""
        horizon = time.monotonic() - LATE_SECONDS
        while len(self._marks) > 1 and self._marks[1][0] <= horizon:
            self._marks.popleft()
        floor = self._marks[0][1]
        self.recent = {ident for ident in self.recent if ident > floor}
        return floor

    def sent(self, ident: int) -> None:
        if self.watch_late:
            self.recent.add(ident)
        if ident > self.position:
            self.position = ident
            if self.watch_late:
                self._marks.append((time.monotonic(), ident))


async def _read(
    session: AsyncSession,
    owner: str,
    after: int,
    *,
    below: int | None = None,
    exclude: Collection[int] = (),
) -> list[tuple[int, dict[str, Any]]]:
    query = (
        select(FileEvent, FileRecord)
        .outerjoin(FileRecord, FileRecord.id == FileEvent.file_id)
        .where(FileEvent.owner == owner, FileEvent.id > after)
    )
    if below is not None:
        query = query.where(FileEvent.id < below)
    if exclude:
        query = query.where(FileEvent.id.not_in(list(exclude)))
    rows = (await session.execute(query.order_by(FileEvent.id).limit(BATCH))).all()
    return [(item.id, _payload(item, record)) for item, record in rows]


def _payload(item: FileEvent, record: FileRecord | None) -> dict[str, Any]:
    return {
        "event_id": item.id,
        "file_id": str(item.file_id),
        "from_status": item.from_status,
        "to_status": item.to_status,
        "reason": item.reason,
        "at": iso_utc(item.created_at),
        "file": FileOut.of(record).model_dump(mode="json") if record is not None else None,
    }


async def _next(
    sessionmaker: async_sessionmaker[AsyncSession], owner: str, seen: _Position
) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """The events to send next (late ones first), and whether more are waiting."""
    late: list[tuple[int, dict[str, Any]]] = []
    async with sessionmaker() as session:
        if seen.watch_late:
            floor = seen.floor()
            if floor < seen.position and len(seen.recent) <= LATE_MAX_TRACKED:
                late = await _read(session, owner, floor, below=seen.position, exclude=seen.recent)
        new = await _read(session, owner, seen.position)
        await session.rollback()
    return late + new, len(new) >= BATCH or len(late) >= BATCH


def _frame(position: int, data: dict[str, Any]) -> ServerSentEvent:
    # ``id`` is the stream's position, the event's own id unless the event is late (a lower id
    # sent after a higher one): a reconnecting client must not go back before events it has.
    return ServerSentEvent(id=str(position), event=event_type(str(data["to_status"])), data=data)


async def _start_after(
    principal: PrincipalDep,
    session: SessionDep,
    after: Annotated[
        int | None,
        Query(ge=0, le=_MAX_ID, description="Send the events after this id (`0`: all of them)."),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="Sent by a reconnecting `EventSource`; wins over `after`.",
        ),
    ] = None,
) -> int:
    """The event id the stream starts after, fixed before the answer starts."""
    del principal  # authenticated first: a caller without a key learns nothing
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        if not (value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= _MAX_ID):
            raise InvalidRequest(
                "Last-Event-ID must be the id of an event this stream sent",
                code="invalid_event_id",
            )
        return int(value)
    if after is not None:
        return after
    newest = await session.scalar(select(func.max(FileEvent.id)))
    return int(newest or 0)


_ERROR_DESCRIPTIONS: dict[int | str, str] = {
    **{status: answer["description"] for status, answer in COMMON_RESPONSES.items()},
    **HEAD_ANSWERS,
}
#: Errors come before the stream starts, as JSON (FastAPI would list them as event streams).
_JSON_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status, description in _ERROR_DESCRIPTIONS.items()
}


@router.get(
    "/events",
    response_class=EventSourceResponse,
    summary="Your files' status changes, live (server-sent events)",
    responses={
        200: {"description": "`text/event-stream`: one event per status change."},
        **_JSON_ERRORS,
    },
)
async def stream_events(
    request: Request,
    principal: PrincipalDep,
    start: Annotated[int, Depends(_start_after)],
) -> AsyncIterator[ServerSentEvent]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    owner = principal.owner
    watch_late = sessionmaker.kw["bind"].dialect.name == "postgresql"
    seen = _Position(start, watch_late=watch_late)
    with SSE_STREAMS.track_inprogress():  # counted before the client hears a thing
        yield ServerSentEvent(
            comment=f"status changes of {owner}'s files", id=str(start), retry=RETRY_MS
        )
        while True:
            mark = BELL.mark(owner)
            # A client that goes away cancels the stream; a read cancelled half-way would
            # leave its connection (SQLite's only one) inside a transaction. The read
            # finishes first.
            with anyio.CancelScope(shield=True):
                batch, more = await _next(sessionmaker, owner, seen)
            for ident, data in batch:
                seen.sent(ident)
                yield _frame(seen.position, data)
            if server_stopping() or await request.is_disconnected():
                return
            if not more:
                await BELL.wait(owner, mark, POLL_INTERVAL)
