"""Webhooks end to end: events dispatched, signed, POSTed to a real receiver on loopback, retried.

The receiver is an HTTP server in a thread that records every request and answers as the test
tells it. Jobs run through the job runner; time moves only when the test moves the clock, so
a retry "after 5 seconds" needs no waiting. The clock starts at the real time, because
``standardwebhooks`` checks a signature's timestamp against the real clock (5 minutes' leeway).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bigupload import __version__
from bigupload.files.models import FileEvent
from bigupload.jobs.models import Job, JobStatus
from bigupload.jobs.runner import JITTER, JobRunner
from bigupload.notifications.webhooks import (
    RETRY_AFTER_CAP,
    WEBHOOK,
    retry_after_seconds,
    webhook_backoff,
)
from tests.api.helpers import start, uploaded
from tests.conftest import Caller
from tests.support.clock import Clock
from tests.support.net import free_port

WAIT = 10.0  # an upper bound against hanging, never a measure of speed
LIFECYCLE = ["pending", "uploaded", "processing", "completed"]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


SECRET_ALL = new_secret()
SECRET_DONE = new_secret()


# -- a webhook receiver ---------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    answered: int

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def event(self) -> str:
        return f"{self.document['data']['owner']}:{self.document['data']['to_status']}"

    def verify(self, secret: str) -> dict[str, Any]:
        """What ``standardwebhooks`` makes of the request (raises if the signature is wrong)."""
        verified: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return verified


@dataclass
class Rule:
    """Answer ``status`` (``times`` times at most) to requests ``matches`` accepts."""

    matches: Callable[[dict[str, Any]], bool]
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    hang: threading.Event | None = None  # wait for this before answering (bounded)


class Receiver:
    """An HTTP server on 127.0.0.1 that records requests; it answers 200 unless told otherwise."""

    def __init__(self, reply: bytes = b"thanks") -> None:
        self.requests: list[Request] = []
        self.reply = reply
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                rule = receiver._rule_for(body)
                if rule is not None and rule.hang is not None:
                    rule.hang.wait(WAIT)
                status = rule.status if rule else 200
                with receiver._lock:
                    receiver.requests.append(
                        Request(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                        )
                    )
                self.send_response(status)
                for name, value in (rule.headers if rule else {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(receiver.reply)))
                self.end_headers()
                self.wfile.write(receiver.reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def answer(
        self,
        status: int,
        *,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] = lambda _: True,
        headers: dict[str, str] | None = None,
        hang: threading.Event | None = None,
    ) -> None:
        with self._lock:
            self._rules.append(Rule(when, status, times, headers or {}, hang))

    def _rule_for(self, body: bytes) -> Rule | None:
        document = json.loads(body)
        with self._lock:
            for rule in self._rules:
                if rule.times > 0 and rule.matches(document):
                    rule.times -= 1
                    return rule
        return None

    def received(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


def about(owner: str, to_status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda d: d["data"]["owner"] == owner and d["data"]["to_status"] == to_status


# -- fixtures the webhook and delivery-log tests share ---------------------------------------------


@dataclass
class Hooks:
    app: FastAPI
    runner: JobRunner
    clock: Clock
    receiver: Receiver

    async def dispatch(self) -> int:
        dispatched = await self.runner.run_periodic("dispatch")
        assert isinstance(dispatched, int)
        return dispatched

    async def run(self) -> int:
        """Dispatch, then run every due job until none is due."""
        await self.dispatch()
        return await self.runner.run_until_idle()

    async def jobs(self) -> list[Job]:
        async with self.app.state.sessionmaker() as session:
            query = select(Job).where(Job.kind == "webhook").order_by(Job.id)
            return list((await session.execute(query)).scalars())

    async def event_ids(self, file_id: str) -> list[int]:
        async with self.app.state.sessionmaker() as session:
            query = (
                select(FileEvent.id)
                .where(FileEvent.file_id == uuid.UUID(file_id))
                .order_by(FileEvent.id)
            )
            return list((await session.execute(query)).scalars())


@pytest.fixture
def settings_overrides(receiver: Receiver) -> dict[str, Any]:
    return {
        "webhooks": [
            {"url": receiver.url("/all"), "secret": SECRET_ALL},
            {"url": receiver.url("/done"), "secret": SECRET_DONE, "events": ["file.completed"]},
        ],
        "webhook_max_attempts": 5,
    }


async def completed_file(caller: Caller, data: bytes = b"some bytes") -> str:
    """A file taken through pending, uploaded, processing and completed: four events."""
    file_id: str = (await uploaded(caller, data))["id"]
    for target in ("processing", "completed"):
        response = await caller.put(f"/api/v1/files/{file_id}/status", json={"status": target})
        assert response.status_code == 200, response.text
    return file_id


# -- the schedule -------------------------------------------------------------------------------


def test_backoff_follows_the_standard_webhooks_schedule() -> None:
    assert WEBHOOK.name == "webhook"
    assert WEBHOOK.backoff is webhook_backoff
    assert [webhook_backoff(n) for n in range(1, 10)] == [
        5,
        5 * 60,
        30 * 60,
        2 * 3600,
        5 * 3600,
        10 * 3600,
        10 * 3600,
        10 * 3600,
        10 * 3600,
    ]


def test_retry_after_is_read_as_seconds_or_a_date_and_capped(test_clock: Clock) -> None:
    in_a_minute = format_datetime(test_clock.current + timedelta(seconds=60), usegmt=True)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds(in_a_minute) == 60
    assert retry_after_seconds("0") == 1  # never at once
    assert retry_after_seconds("99999999") == RETRY_AFTER_CAP
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# -- signing ---------------------------------------------------------------------------------------


async def test_every_delivery_is_signed_and_verifies_with_its_endpoints_secret(
    hooks: Hooks, alice: Caller
) -> None:
    hooks.receiver.reply = b"x" * 3000
    file_id = await completed_file(alice)
    assert await hooks.run() == 5
    event_ids = await hooks.event_ids(file_id)

    to_all, to_done = hooks.receiver.received("/all"), hooks.receiver.received("/done")
    assert [r.event for r in to_all] == [f"alice:{s}" for s in LIFECYCLE]
    assert [r.event for r in to_done] == ["alice:completed"]
    sent_at = str(int(hooks.clock.current.timestamp()))
    for request, secret, other in [(r, SECRET_ALL, SECRET_DONE) for r in to_all] + [
        (to_done[0], SECRET_DONE, SECRET_ALL)
    ]:
        assert request.verify(secret) == request.document
        with pytest.raises(WebhookVerificationError):
            request.verify(other)
        headers = request.headers
        assert headers["webhook-timestamp"] == sent_at
        assert headers["webhook-signature"].startswith("v1,")
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == f"bigupload/{__version__}"
        # The bytes signed are the bytes sent: compact JSON.
        assert request.body == json.dumps(request.document, separators=(",", ":")).encode()
    assert [r.headers["webhook-id"] for r in to_all] == [f"evt_{n}" for n in event_ids]
    assert to_done[0].headers["webhook-id"] == f"evt_{event_ids[-1]}"

    tampered = to_all[0]
    forged = Request(tampered.path, tampered.headers, tampered.body.replace(b"alice", b"bob"), 200)
    with pytest.raises(WebhookVerificationError):
        forged.verify(SECRET_ALL)

    jobs = await hooks.jobs()
    assert {j.status for j in jobs} == {JobStatus.DONE}
    for job in jobs:
        assert job.result is not None
        assert (job.result["status_code"], job.result["response"]) == (200, "x" * 1024)
        assert job.result["duration_ms"] >= 0
    assert await hooks.run() == 0  # nothing is sent twice
    assert len(hooks.receiver.received()) == 5


# -- failures and retries ------------------------------------------------------------------------


async def test_a_failed_delivery_is_retried_after_the_backoff_with_the_same_id(
    hooks: Hooks, alice: Caller
) -> None:
    hooks.receiver.answer(500)
    await start(alice, b"data")  # one event: pending
    assert await hooks.run() == 1
    [job] = await hooks.jobs()
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
    assert job.last_error is not None and "the endpoint answered 500" in job.last_error
    assert job.result is not None and job.result["status_code"] == 500
    wait = (job.run_at - hooks.clock.current).total_seconds()
    assert 5 * (1 - JITTER) <= wait <= 5 * (1 + JITTER)

    assert await hooks.run() == 0  # not yet due
    hooks.clock.advance(5 * (1 + JITTER) + 1)
    assert await hooks.run() == 1

    first, second = hooks.receiver.received("/all")
    assert (first.answered, second.answered) == (500, 200)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.body == first.body
    assert second.verify(SECRET_ALL)["type"] == "file.pending"
    [job] = await hooks.jobs()
    assert (job.status, job.attempts) == (JobStatus.DONE, 2)
    assert job.result is not None and job.result["status_code"] == 200


async def test_a_files_events_arrive_in_order_even_when_one_is_retried(
    hooks: Hooks, alice: Caller, bob: Caller
) -> None:
    hooks.receiver.answer(500, when=about("alice", "pending"))
    await completed_file(alice)
    await completed_file(bob)
    await hooks.run()
    # Alice's later events wait behind her pending event; bob's are not held up by hers.
    assert [r.event for r in hooks.receiver.received("/all") if r.event.startswith("alice")] == [
        "alice:pending"
    ]
    assert [r.event for r in hooks.receiver.received("/all") if r.event.startswith("bob")] == [
        f"bob:{s}" for s in LIFECYCLE
    ]

    hooks.clock.advance(5 * (1 + JITTER) + 1)
    await hooks.run()
    alice_seen = [r for r in hooks.receiver.received("/all") if r.event.startswith("alice")]
    assert [(r.event, r.answered) for r in alice_seen] == [
        ("alice:pending", 500),
        ("alice:pending", 200),
        ("alice:uploaded", 200),
        ("alice:processing", 200),
        ("alice:completed", 200),
    ]
    assert alice_seen[0].headers["webhook-id"] == alice_seen[1].headers["webhook-id"]


async def test_429_with_retry_after_is_honoured(hooks: Hooks, alice: Caller) -> None:
    hooks.receiver.answer(429, headers={"Retry-After": "120"})
    await start(alice, b"data")
    await hooks.run()
    [job] = await hooks.jobs()
    wait = (job.run_at - hooks.clock.current).total_seconds()
    assert 120 * (1 - JITTER) <= wait <= 120 * (1 + JITTER)  # not the 5 s of the backoff
    assert job.result is not None and job.result["status_code"] == 429
    hooks.clock.advance(120 * (1 + JITTER) + 1)
    await hooks.run()
    assert [r.answered for r in hooks.receiver.received()] == [429, 200]


async def test_410_gone_stops_at_once(hooks: Hooks, alice: Caller) -> None:
    hooks.receiver.answer(410, times=10)
    await start(alice, b"data")
    await hooks.run()
    [job] = await hooks.jobs()
    assert (job.status, job.attempts) == (JobStatus.DEAD, 1)
    assert job.last_error is not None and "410" in job.last_error
    assert job.result is not None and job.result["status_code"] == 410
    hooks.clock.advance(24 * 3600)
    assert await hooks.run() == 0
    assert len(hooks.receiver.received()) == 1


class TestTimeout:
    @pytest.fixture
    def settings_overrides(self, receiver: Receiver) -> dict[str, Any]:
        return {
            "webhooks": [{"url": receiver.url("/all"), "secret": SECRET_ALL}],
            "webhook_timeout_seconds": 0.2,
        }

    async def test_no_answer_in_time_is_retried(self, hooks: Hooks, alice: Caller) -> None:
        release = threading.Event()
        hooks.receiver.answer(200, hang=release)
        await start(alice, b"data")
        try:
            await hooks.run()
        finally:
            release.set()
        [job] = await hooks.jobs()
        assert (job.status, job.attempts) == (JobStatus.QUEUED, 1)
        assert job.last_error is not None and "no answer within 0.2 s" in job.last_error
        assert job.result is not None and job.result["status_code"] is None
        hooks.clock.advance(5 * (1 + JITTER) + 1)
        await hooks.run()
        [job] = await hooks.jobs()
        assert (job.status, job.attempts) == (JobStatus.DONE, 2)


class TestEndpointDown:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {
            "webhooks": [{"url": f"http://127.0.0.1:{free_port()}/hook", "secret": SECRET_ALL}],
            "webhook_max_attempts": 3,
        }

    async def test_dead_after_max_attempts_with_the_last_error(
        self, hooks: Hooks, alice: Caller
    ) -> None:
        await start(alice, b"data")
        for _ in range(10):  # bounded: three attempts are expected
            await hooks.run()
            [job] = await hooks.jobs()
            if job.status == JobStatus.DEAD:
                break
            hooks.clock.advance(webhook_backoff(job.attempts) * (1 + JITTER) + 1)
        assert (job.status, job.attempts, job.max_attempts) == (JobStatus.DEAD, 3, 3)
        assert job.last_error is not None and "could not reach the endpoint" in job.last_error
        assert job.result is not None and job.result["status_code"] is None
        assert job.finished_at == hooks.clock.current


async def test_an_endpoint_removed_from_the_configuration_gets_nothing_more(
    hooks: Hooks, app: FastAPI, alice: Caller
) -> None:
    await start(alice, b"data")
    await hooks.dispatch()
    settings = app.state.settings.model_copy(update={"webhooks": ()})
    runner = JobRunner(
        sessionmaker=app.state.sessionmaker,
        storage=app.state.storage,
        settings=settings,
        kinds={"webhook": WEBHOOK},
    )
    assert await runner.run_until_idle() == 1
    [job] = await hooks.jobs()
    assert (job.status, job.attempts) == (JobStatus.DEAD, 1)
    assert job.last_error is not None and "endpoint no longer configured" in job.last_error
    assert hooks.receiver.received() == []
