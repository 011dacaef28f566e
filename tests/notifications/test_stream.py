"""``GET /api/v1/events``: the caller's file events as server-sent events, over real HTTP.

httpx's ASGI transport does not stream, so the app is served by uvicorn on a loopback port, in a
thread of the test process, for every database. Every read of the stream is bounded: a frame
that never comes fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from bigupload import clock
from bigupload.db import create_engine, create_sessionmaker
from bigupload.files import repository
from bigupload.files.inserter import FileInserter
from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.status import FileStatus
from bigupload.notifications import stream
from bigupload.storage.base import Storage
from bigupload.storage.local import LocalStorage
from tests.cli.helpers import STOP_TIMEOUT, Server
from tests.cli.test_serve import one_banner_key
from tests.conftest import SECRET, Caller, make_key
from tests.support.net import free_port

READ_TIMEOUT = 15  # an upper bound against hanging, never a measure of speed
DATA = b"quarterly numbers\n" * 64


# -- a live server ---------------------------------------------------------------------------


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings_overrides(port: int) -> dict[str, Any]:
    return {"public_url": f"http://127.0.0.1:{port}"}


@pytest.fixture
def storage(tmp_path: Path, port: int) -> Storage:
    """The local store, its URLs pointing at the live server."""
    return LocalStorage(tmp_path / "store", public_url=f"http://127.0.0.1:{port}", secret=SECRET)


@dataclass
class Live:
    http: httpx.AsyncClient
    keys: dict[str, str]
    app: FastAPI

    def auth(self, owner: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[owner]}"}


@pytest.fixture
async def live(app: FastAPI, port: int) -> AsyncIterator[Live]:
    keys = {owner: await make_key(app, owner) for owner in ("alice", "bob")}
    # The server's loop makes its own connections (asyncpg's belong to one loop); its lifespan
    # disposes of them when it stops.
    await app.state.engine.dispose()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(750):
        if server.started or not thread.is_alive():
            break
        await asyncio.sleep(0.02)
    assert server.started, "the server did not start"
    timeout = httpx.Timeout(READ_TIMEOUT, read=None)  # streams are idle; reads are bounded below
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=timeout, trust_env=False
    ) as http:
        yield Live(http, keys, app)
    server.should_exit = True
    await asyncio.to_thread(thread.join, READ_TIMEOUT)
    assert not thread.is_alive(), "the server did not stop"


# -- reading a stream ----------------------------------------------------------------------------


@dataclass
class Frame:
    fields: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.fields["data"])
        return value


class Stream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def frame(self) -> Frame:
        """The next frame (events, comments, the opening frame), read within a bound."""
        frame = Frame()
        async with asyncio.timeout(READ_TIMEOUT):
            async for line in self._lines:
                if line == "":
                    if frame.fields or frame.comments:
                        return frame
                    continue
                if line.startswith(":"):
                    frame.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data" and "data" in frame.fields:
                    value = frame.fields["data"] + "\n" + value
                frame.fields[name] = value
        raise AssertionError(f"the stream ended; last frame {frame}")

    async def event(self) -> Frame:
        """The next frame that is an event (keep-alive comments are skipped)."""
        while True:
            frame = await self.frame()
            if "event" in frame.fields:
                return frame


@asynccontextmanager
async def open_stream(live: Live, owner: str, **kw: Any) -> AsyncIterator[tuple[Stream, Frame]]:
    """A stream of ``owner``'s events, and its opening frame."""
    headers = {**live.auth(owner), **kw.pop("headers", {})}
    async with live.http.stream("GET", "/api/v1/events", headers=headers, **kw) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Stream(response)
        yield reader, await reader.frame()


# -- driving files through their life over the API ---------------------------------------------


async def start_upload(live: Live, owner: str, filename: str = "report.pdf") -> str:
    ticket = await live.http.post(
        "/api/v1/uploads",
        json={"filename": filename, "content_type": "application/pdf", "size": len(DATA)},
        headers=live.auth(owner),
    )
    assert ticket.status_code == 201, ticket.text
    file_id: str = ticket.json()["id"]
    return file_id


async def complete_life(live: Live, owner: str) -> str:
    """A file that goes pending -> uploaded -> processing -> completed; answer its id."""
    ticket = await live.http.post(
        "/api/v1/uploads",
        json={"filename": "report.pdf", "content_type": "application/pdf", "size": len(DATA)},
        headers=live.auth(owner),
    )
    assert ticket.status_code == 201, ticket.text
    body = ticket.json()
    put = await live.http.request(
        body["method"], body["url"], content=DATA, headers=body["headers"]
    )
    assert put.status_code == 200, put.text
    done = await live.http.post(f"/api/v1/uploads/{body['id']}/complete", headers=live.auth(owner))
    assert done.status_code == 200, done.text
    for target in ("processing", "completed"):
        moved = await live.http.put(
            f"/api/v1/files/{body['id']}/status", json={"status": target}, headers=live.auth(owner)
        )
        assert moved.status_code == 200, moved.text
    file_id: str = body["id"]
    return file_id


LIFE = [(None, "pending"), ("pending", "uploaded"), ("uploaded", "processing")]
LIFE.append(("processing", "completed"))


def assert_life(events: list[Frame], file_id: str) -> None:
    """``events`` are exactly the four events of ``file_id``'s life, in order."""
    assert [(e.data["from_status"], e.data["to_status"]) for e in events] == LIFE
    assert [e.fields["event"] for e in events] == [f"file.{to}" for _, to in LIFE]
    assert {e.data["file_id"] for e in events} == {file_id}
    ids = [int(e.fields["id"]) for e in events]
    assert ids == sorted(set(ids)), ids
    assert ids == [e.data["event_id"] for e in events]
    for e in events:
        assert set(e.data) == {
            "event_id",
            "file_id",
            "from_status",
            "to_status",
            "reason",
            "at",
            "file",
        }
        assert e.data["file"]["id"] == file_id
        assert e.data["file"]["owner"] == "alice"
        assert e.data["at"].endswith("Z")


# -- the stream ----------------------------------------------------------------------------------


async def test_each_owner_sees_their_own_events_live_and_in_order(live: Live) -> None:
    async with open_stream(live, "alice") as (alice, opening), open_stream(live, "bob") as (bob, _):
        assert opening.fields["retry"] == "2000"
        assert opening.fields["id"] == "0"  # no event yet: the stream starts at the beginning

        file_id = await complete_life(live, "alice")
        events = [await alice.event() for _ in LIFE]
        assert_life(events, file_id)
        assert events[-1].data["file"]["status"] == "completed"

        bobs_file = await start_upload(live, "bob")
        first_for_bob = await bob.event()  # alice's four events came before it, if at all
        assert first_for_bob.data["file_id"] == bobs_file
        assert first_for_bob.fields["event"] == "file.pending"
        assert first_for_bob.data["file"]["owner"] == "bob"

        marker = await start_upload(live, "alice", "marker.pdf")
        next_for_alice = await alice.event()  # bob's event came before it, if at all
        assert next_for_alice.data["file_id"] == marker
        assert int(next_for_alice.fields["id"]) > int(first_for_bob.fields["id"])


async def test_last_event_id_resumes_right_after_it(live: Live) -> None:
    file_id = await complete_life(live, "alice")
    await start_upload(live, "bob")
    async with open_stream(live, "alice", params={"after": "0"}) as (replay, opening):
        assert opening.fields["id"] == "0"
        history = [await replay.event() for _ in LIFE]
    assert_life(history, file_id)
    resume_at = history[1].fields["id"]  # uploaded

    # A reconnecting EventSource keeps its URL (here ?after=0) and adds the header, which wins.
    async with open_stream(
        live, "alice", params={"after": "0"}, headers={"Last-Event-ID": resume_at}
    ) as (resumed, opening):
        assert opening.fields["id"] == resume_at
        marker = await start_upload(live, "alice", "marker.pdf")
        rest = [await resumed.event() for _ in range(3)]
    assert [e.fields["id"] for e in rest[:2]] == [e.fields["id"] for e in history[2:]]
    assert [e.data["to_status"] for e in rest] == ["processing", "completed", "pending"]
    assert rest[2].data["file_id"] == marker  # bob's event, between them by id, never came


async def test_without_a_resume_point_only_new_events_are_sent(live: Live) -> None:
    await complete_life(live, "alice")
    async with open_stream(live, "alice", params={"after": "2"}) as (_, opening):
        assert opening.fields["id"] == "2"
    async with open_stream(live, "alice") as (fresh, opening):
        assert opening.fields["id"] == "4"  # the newest event when the stream opened
        marker = await start_upload(live, "alice", "marker.pdf")
        first = await fresh.event()
    assert first.data["file_id"] == marker
    assert first.fields["id"] == "5"


async def test_keep_alive_comments_while_nothing_happens(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastapi.routing

    monkeypatch.setattr(fastapi.routing, "_PING_INTERVAL", 0.05)
    async with open_stream(live, "alice") as (alice, _):
        ping = await alice.frame()
    assert ping.comments == ["ping"]
    assert ping.fields == {}


async def test_a_client_that_goes_away_ends_its_stream(live: Live) -> None:
    await complete_life(live, "alice")
    for _ in range(20):  # gone right after the opening frame: often while the stream reads
        async with open_stream(live, "alice", params={"after": "0"}) as (_, opening):
            assert opening.fields["retry"] == "2000"
        files = await live.http.get("/api/v1/files", headers=live.auth("alice"))
        assert files.status_code == 200, files.text
    for _ in range(int(READ_TIMEOUT / 0.02)):
        if stream.BELL.listening() == 0:
            break
        await asyncio.sleep(0.02)
    assert stream.BELL.listening() == 0, "a stream outlived its client"
    # The registry is free (SQLite has one connection): the server answers other requests.
    files = await live.http.get("/api/v1/files", headers=live.auth("alice"))
    assert files.status_code == 200, files.text
    file_id = await start_upload(live, "alice")
    assert (await live.http.get(f"/api/v1/files/{file_id}", headers=live.auth("alice"))).is_success


async def test_a_client_that_leaves_while_events_flow_is_one_info_line(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that leaves while events are on their way (FastAPI's relay then fails with
    anyio.BrokenResourceError) is a client leaving: one INFO line each, counted, no error."""
    uvicorn_errors = logging.getLogger("uvicorn.error")  # uvicorn's loggers do not propagate
    uvicorn_errors.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    done = asyncio.Event()

    async def churn() -> None:  # alice's events keep coming while her streams come and go
        while not done.is_set():
            await start_upload(live, "alice")

    streams = 20
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(3):
                group.create_task(churn())
            try:
                for attempt in range(streams):
                    async with (
                        httpx.AsyncClient(base_url=live.http.base_url, trust_env=False) as own,
                        open_stream(
                            Live(own, live.keys, live.app), "alice", params={"after": "0"}
                        ) as (alice, _),
                    ):
                        for _ in range(1 + attempt % 4):
                            await alice.event()
            finally:
                done.set()
        for _ in range(int(READ_TIMEOUT / 0.02)):  # until the server logged every stream
            if len(access_lines(caplog, "/api/v1/events")) == streams:
                break
            await asyncio.sleep(0.02)
    finally:
        uvicorn_errors.removeHandler(caplog.handler)
    assert len(access_lines(caplog, "/api/v1/events")) == streams
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.INFO or r.exc_info] == []
    left = [r for r in caplog.records if r.name == "bigupload.disconnects"]
    # Whether a stream is left with an event on its way is a race (most runs see several):
    # test_stream_route.py makes both cases certain. Each one seen is one INFO line.
    assert len(left) == live.app.state.disconnects.event_streams
    assert all(r.levelno == logging.INFO and r.request_id in r.getMessage() for r in left)


def access_lines(caplog: pytest.LogCaptureFixture, path: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "bigupload.access" and getattr(r, "path", "") == path
    ]


@pytest.mark.parametrize(
    ("headers", "params", "status", "code"),
    [
        ({}, {}, 401, "unauthenticated"),
        ({"Authorization": "Bearer bu_" + "A" * 43}, {}, 401, "invalid_api_key"),
        ({"Last-Event-ID": "abc"}, {}, 422, "invalid_event_id"),
        ({"Last-Event-ID": "-3"}, {}, 422, "invalid_event_id"),
        ({"Last-Event-ID": str(2**63)}, {}, 422, "invalid_event_id"),
        ({}, {"after": "-1"}, 422, "validation_error"),
        ({}, {"after": "x"}, 422, "validation_error"),
        ({}, {"after": str(2**63)}, 422, "validation_error"),
    ],
    ids=[
        "no-key",
        "unknown-key",
        "bad-last-event-id",
        "negative-last-event-id",
        "huge-last-event-id",
        "after<0",
        "after=x",
        "huge-after",
    ],
)
async def test_refusals(
    alice: Caller, headers: dict[str, str], params: dict[str, str], status: int, code: str
) -> None:
    """Refused before any stream starts, so the in-process transport can ask."""
    if "Authorization" not in headers and status != 401:
        headers = {**alice.auth, **headers}
    response = await alice.http.get("/api/v1/events", headers=headers, params=params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_an_event_committed_after_a_newer_one_is_still_sent(
    live: Live, database_url: str
) -> None:
    """PostgreSQL numbers events at insert: a transaction may commit a lower id later."""
    engine = create_engine(database_url)
    sessions = create_sessionmaker(engine)
    early_file, later_file = uuid.uuid4(), uuid.uuid4()

    def event_of(file_id: uuid.UUID) -> FileEvent:
        return FileEvent(
            file_id=file_id,
            owner="alice",
            from_status=None,
            to_status="pending",
            created_at=clock.now(),
        )

    try:
        async with open_stream(live, "alice") as (alice, _):
            async with sessions() as slow:
                slow.add(early := event_of(early_file))
                await slow.flush()  # numbered, not committed
                async with sessions() as quick, quick.begin():
                    quick.add(later := event_of(later_file))
                first = await alice.event()
                assert first.data["file_id"] == str(later_file)
                await slow.commit()
            second = await alice.event()
        assert early.id < later.id
        assert second.data["file_id"] == str(early_file)
        assert second.data["event_id"] == early.id
        assert second.data["file"] is None  # no such file record: the event alone
        # Its id is the stream's position: a reconnect resumes after both.
        assert second.fields["id"] == first.fields["id"] == str(later.id)
    finally:
        await engine.dispose()


# -- waking streams ----------------------------------------------------------------------------


async def test_committing_an_event_rings_for_its_owner_only(app: FastAPI) -> None:
    bell = stream.BELL
    assert bell.slot("alice") != bell.slot("bob")
    sessions = app.state.sessionmaker
    record = FileRecord(
        id=uuid.uuid4(),
        owner="alice",
        bucket="b",
        key=f"uploads/alice/{uuid.uuid4()}",
        filename="a.pdf",
        content_type="application/pdf",
        size=1,
        status="pending",
        created_at=clock.now(),
        updated_at=clock.now(),
    )
    alice, bob = bell.mark("alice"), bell.mark("bob")
    waiting = asyncio.create_task(bell.wait("alice", alice, 3600))
    for _ in range(int(READ_TIMEOUT / 0.01)):
        if bell.listening():
            break
        await asyncio.sleep(0.01)
    assert bell.listening() == 1

    await FileInserter(sessions).insert(record)  # a Core insert of the first event
    assert bell.mark("alice") == alice + 1
    assert bell.mark("bob") == bob
    await asyncio.wait_for(waiting, READ_TIMEOUT)  # woken by the ring: it would wait an hour
    assert bell.listening() == 0
    await asyncio.wait_for(bell.wait("alice", alice, 3600), READ_TIMEOUT)  # rang since: no wait

    async with sessions() as session:
        repository.add_event(session, record, "pending", "failed")
        await session.flush()
        await session.rollback()  # never committed: no ring
    assert bell.mark("alice") == alice + 1

    async with sessions() as session, session.begin():
        stored = await session.get(FileRecord, record.id)
        assert stored is not None
        assert await repository.transition(session, stored, FileStatus.PENDING, FileStatus.UPLOADED)
    assert bell.mark("alice") == alice + 2  # an ORM flush of the event
    assert bell.mark("bob") == bob


# -- shutting down -------------------------------------------------------------------------------


def test_the_server_stops_while_a_stream_is_open(tmp_path: Path) -> None:
    """uvicorn waits for open answers before it stops: the stream must end by itself."""
    server = Server(tmp_path / "data", free_port())
    try:
        server.wait_for_line("listening on")
        key = one_banner_key(server.stderr)
        server.wait_until_answering()
        timeout = httpx.Timeout(READ_TIMEOUT)
        with (
            httpx.Client(base_url=server.base_url, timeout=timeout, trust_env=False) as http,
            http.stream(
                "GET", "/api/v1/events", headers={"Authorization": f"Bearer {key}"}
            ) as response,
        ):
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines).startswith(":")  # the opening frame has come
            server.process.terminate()  # SIGTERM, as a supervisor stops a service
            rest = []  # ends when the server ends the stream
            deadline = time.monotonic() + READ_TIMEOUT
            for line in lines:
                rest.append(line)
                assert time.monotonic() < deadline, "the stream never ended"
        assert all(not line.startswith("event:") for line in rest), rest
        # uvicorn stops gracefully, then re-raises the signal it caught (or exits with 0).
        assert server.process.wait(STOP_TIMEOUT) in (0, -signal.SIGTERM), server.stderr
        server.wait_for_line("GET /api/v1/events 200")  # the answer was finished, and logged
    finally:
        server.stop()
