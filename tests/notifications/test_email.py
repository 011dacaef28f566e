"""E-mail notifications end to end: events dispatched, e-mailed through a real SMTP server.

The SMTP server is aiosmtpd on loopback, in a thread; it records what it accepts and refuses
what the test tells it to. Jobs run through the job runner; time moves only when the test moves
the clock, so a retry "in 30 seconds" needs no waiting.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from fastapi import FastAPI
from sqlalchemy import select

from bigupload import clock
from bigupload.auth import repository as keys
from bigupload.config import Settings
from bigupload.jobs.models import Job, JobStatus
from bigupload.jobs.runner import JobRunner
from bigupload.notifications.dispatch import DISPATCH
from bigupload.notifications.email import EMAIL, compose, parse_smtp_url
from tests.api.helpers import uploaded
from tests.cli.helpers import Result, bigupload, new_registry, run_many
from tests.conftest import Caller
from tests.support.net import free_port

DATA = b"quarterly numbers\n" * 64  # 1152 bytes
SENDER = "bigupload <noreply@files.example.org>"


# -- a mail server ------------------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps what it accepts; refuses recipients while ``refuse`` is set."""

    refuse: list[str] = field(default_factory=list)  # answers to RCPT, used up one by one
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if self.refuse:
                return self.refuse.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def received(self) -> list[Mail]:
        with self.lock:
            return list(self.mails)

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        with self.lock:
            self.logins.append((user, password))
        return AuthResult(success=(user, password) == ("mailer", "p@ss:word"), handled=False)


def start_server(mailbox: Mailbox, **options: Any) -> Controller:
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    return controller


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def smtp_port(mailbox: Mailbox) -> Iterator[int]:
    controller = start_server(mailbox)
    yield int(controller.port)
    controller.stop()


@pytest.fixture
def settings_overrides(smtp_port: int) -> dict[str, Any]:
    return {"smtp_url": f"smtp://127.0.0.1:{smtp_port}", "email_from": SENDER}


# -- running jobs -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@dataclass
class Mailer:
    app: FastAPI
    clock: Clock
    settings: Settings

    def runner(self, **settings: Any) -> JobRunner:
        return JobRunner(
            sessionmaker=self.app.state.sessionmaker,
            storage=self.app.state.storage,
            settings=self.settings.model_copy(update=settings),
            kinds={EMAIL.name: EMAIL},
            periodics=[DISPATCH],
        )

    async def run(self, **settings: Any) -> int:
        """Dispatch the new events, then run every due job until none is due."""
        runner = self.runner(**settings)
        await runner.run_periodic(DISPATCH.name)
        return await runner.run_until_idle()

    async def jobs(self) -> list[Job]:
        async with self.app.state.sessionmaker() as session:
            query = select(Job).where(Job.kind == EMAIL.name).order_by(Job.id)
            return list((await session.execute(query)).scalars())

    async def add_key(self, name: str, owner: str, email: str | None) -> None:
        async with self.app.state.sessionmaker() as session, session.begin():
            await keys.create(session, name, owner, email=email)
        self.clock.advance(1)  # keys made later are newer


@pytest.fixture
async def mailer(app: FastAPI) -> AsyncIterator[Mailer]:
    source = Clock()
    clock.set_clock(source)
    try:
        yield Mailer(app, source, app.state.settings)
    finally:
        clock.set_clock(None)


async def finish(caller: Caller, status: str = "completed", reason: str | None = None) -> str:
    """A file of ``caller``'s taken to ``status`` through the API; answer its id."""
    record = await uploaded(caller, DATA, filename="report.pdf", content_type="application/pdf")
    steps = ["processing", status] if status == "completed" else [status]
    for step in steps:
        body: dict[str, Any] = {"status": step}
        if step == status and reason is not None:
            body["reason"] = reason
        moved = await caller.put(f"/api/v1/files/{record['id']}/status", json=body)
        assert moved.status_code == 200, moved.text
    file_id: str = record["id"]
    return file_id


# -- delivery -----------------------------------------------------------------------------------


async def test_a_completed_file_is_emailed_to_its_owner(
    alice: Caller, mailer: Mailer, mailbox: Mailbox
) -> None:
    await mailer.add_key("alice-mail", "alice", "alice@example.com")
    file_id = await finish(alice)
    await mailer.run()

    [mail] = mailbox.received()  # completed only: the other events are not in email_events
    assert mail.rcpt_tos == ["alice@example.com"]
    assert mail.mail_from == "noreply@files.example.org"
    message = mail.message
    assert message["Subject"] == "report.pdf is completed"
    assert message["To"] == "alice@example.com"
    assert message["From"] == SENDER
    assert message["Auto-Submitted"] == "auto-generated"
    [job] = await mailer.jobs()
    assert job.status == JobStatus.DONE
    event_id = job.payload["document"]["data"]["event_id"]
    assert message["Message-ID"] == f"<bigupload.event-{event_id}@files.example.org>"
    assert job.result == {"to": "alice@example.com", "message_id": message["Message-ID"]}
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("report.pdf is completed.\n\n")
    for line in (
        "File:     report.pdf",
        "Status:   completed (was processing)",
        "Size:     1.1 KiB (1,152 bytes)",
        "Type:     application/pdf",
        f"File id:  {file_id}",
        f"When:     {job.payload['document']['timestamp']}",
        f"Event id: {event_id}",
    ):
        assert line in body.splitlines(), (line, body)
    assert "Reason" not in body

    await mailer.run()
    assert len(mailbox.received()) == 1  # nothing more to send


async def test_a_failed_file_says_why(alice: Caller, mailer: Mailer, mailbox: Mailbox) -> None:
    await mailer.add_key("alice-mail", "alice", "alice@example.com")
    await finish(alice, "failed", reason="the scanner found a virus")
    await mailer.run()
    [mail] = mailbox.received()
    assert mail.message["Subject"] == "report.pdf failed: the scanner found a virus"
    lines = mail.message.get_content().splitlines()
    assert "Reason:   the scanner found a virus" in lines
    assert "Status:   failed (was uploaded)" in lines


async def test_the_newest_unrevoked_address_of_the_owner_is_used(
    alice: Caller, mailer: Mailer, mailbox: Mailbox
) -> None:
    await mailer.add_key("alice-old", "alice", "old@example.com")
    await mailer.add_key("alice-new", "alice", "new@example.com")
    await mailer.add_key("alice-bare", "alice", None)  # newest, but without an address
    await mailer.add_key("mallory", "mallory", "mallory@example.com")  # someone else's
    await finish(alice)
    await mailer.run()
    async with mailer.app.state.sessionmaker() as session, session.begin():
        assert await keys.revoke(session, "alice-new")
    await finish(alice)
    await mailer.run()
    assert [mail.rcpt_tos for mail in mailbox.received()] == [
        ["new@example.com"],
        ["old@example.com"],
    ]


async def test_an_owner_without_an_address_is_skipped(
    bob: Caller, mailer: Mailer, mailbox: Mailbox
) -> None:
    await mailer.add_key("alice-mail", "alice", "alice@example.com")
    await finish(bob)
    await mailer.run()
    [job] = await mailer.jobs()
    assert job.status == JobStatus.DONE
    assert job.result == {"skipped": "no e-mail address for bob"}
    assert mailbox.received() == []


# -- failures -----------------------------------------------------------------------------------


async def test_a_permanent_refusal_ends_the_job(
    alice: Caller, mailer: Mailer, mailbox: Mailbox
) -> None:
    await mailer.add_key("alice-mail", "alice", "alice@example.com")
    mailbox.refuse = ["550 5.1.1 <alice@example.com>: mailbox unavailable"]
    await finish(alice)
    await mailer.run()
    [job] = await mailer.jobs()
    assert job.status == JobStatus.DEAD
    assert job.attempts == 1
    assert job.result is not None and job.result["smtp_code"] == 550
    assert "550" in (job.last_error or "")
    assert "mailbox unavailable" in (job.last_error or "")
    assert mailbox.received() == []


async def test_a_temporary_refusal_is_tried_again_later(
    alice: Caller, mailer: Mailer, mailbox: Mailbox
) -> None:
    await mailer.add_key("alice-mail", "alice", "alice@example.com")
    mailbox.refuse = ["451 4.3.0 greylisted, try again later"]
    await finish(alice)
    await mailer.run()
    [job] = await mailer.jobs()
    assert job.status == JobStatus.QUEUED
    assert job.attempts == 1
    assert job.run_at > mailer.clock.current
    assert "451" in (job.last_error or "")
    assert mailbox.received() == []

    mailer.clock.advance(3600)
    await mailer.run()
    [job] = await mailer.jobs()
    assert job.status == JobStatus.DONE
    assert job.attempts == 2
    [mail] = mailbox.received()
    assert mail.rcpt_tos == ["alice@example.com"]


async def test_a_server_that_is_down_is_tried_again_later(
    alice: Caller, mailer: Mailer, mailbox: Mailbox
) -> None:
    await mailer.add_key("alice-mail", "alice", "alice@example.com")
    await finish(alice)
    await mailer.run(smtp_url=f"smtp://127.0.0.1:{free_port()}")  # nothing listens there
    [job] = await mailer.jobs()
    assert job.status == JobStatus.QUEUED
    assert job.attempts == 1
    assert job.run_at > mailer.clock.current
    assert "cannot be reached" in (job.last_error or "")

    mailer.clock.advance(3600)
    await mailer.run()  # the configured server is up
    [job] = await mailer.jobs()
    assert job.status == JobStatus.DONE
    assert len(mailbox.received()) == 1


async def test_starttls_the_server_does_not_offer_ends_the_job(
    alice: Caller, mailer: Mailer, mailbox: Mailbox, smtp_port: int
) -> None:
    await mailer.add_key("alice-mail", "alice", "alice@example.com")
    await finish(alice)
    await mailer.run(smtp_url=f"smtp://127.0.0.1:{smtp_port}?starttls=true")
    [job] = await mailer.jobs()
    assert job.status == JobStatus.DEAD
    assert "STARTTLS" in (job.last_error or "")
    assert mailbox.received() == []


@pytest.mark.parametrize(("password", "delivered"), [("p%40ss%3Aword", True), ("wrong", False)])
async def test_login_with_the_credentials_of_the_url(
    alice: Caller, mailer: Mailer, password: str, delivered: bool
) -> None:
    guarded = Mailbox()
    controller = start_server(guarded, authenticator=guarded.authenticate, auth_require_tls=False)
    try:
        await mailer.add_key("alice-mail", "alice", "alice@example.com")
        await finish(alice)
        await mailer.run(smtp_url=f"smtp://mailer:{password}@127.0.0.1:{controller.port}")
    finally:
        controller.stop()
    [job] = await mailer.jobs()
    assert guarded.logins and guarded.logins[0][0] == "mailer"
    if delivered:
        assert guarded.logins == [("mailer", "p@ss:word")]
        assert job.status == JobStatus.DONE
        assert len(guarded.received()) == 1
    else:
        assert job.status == JobStatus.DEAD  # 535: refused for good
        assert "535" in (job.last_error or "")
        assert guarded.received() == []


# -- the message and the URL, alone -------------------------------------------------------------


def document(**changes: Any) -> dict[str, Any]:
    file = {
        "id": "7d0c9c4e-7f1a-4a51-9a43-7d1c2c7cbd6e",
        "filename": "report.pdf",
        "content_type": "application/pdf",
        "detected_content_type": None,
        "size": 10,
        "stored_size": None,
        "error": None,
    }
    file.update(changes.pop("file", None) or {})
    data = {
        "event_id": 42,
        "file_id": file["id"],
        "owner": "alice",
        "from_status": "processing",
        "to_status": "completed",
        "reason": None,
        "file": file,
    }
    data.update(changes)
    return {"type": f"file.{data['to_status']}", "timestamp": "2026-01-31T12:00:00Z", "data": data}


def test_nothing_from_the_file_can_add_a_header() -> None:
    evil = document(
        to_status="failed",
        reason="bad\r\nBcc: victim@example.com",
        file={"filename": "a.pdf\r\nBcc: victim@example.com\r\n\r\nhi"},
    )
    message = compose(evil, "alice@example.com", SENDER)
    raw = message.as_bytes()
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Bcc"] is None
    assert "\n" not in str(parsed["Subject"])
    assert str(parsed["Subject"]).startswith("a.pdf Bcc: victim@example.com hi failed: bad Bcc")
    assert b"\nBcc:" not in raw.split(b"\n\n", 1)[0]


def test_a_file_that_is_gone_is_still_described() -> None:
    gone = document(to_status="deleted", from_status="completed")
    gone["data"]["file"] = None
    message = compose(gone, "alice@example.com", SENDER)
    assert message["Subject"] == f"file {gone['data']['file_id']} is deleted"
    assert "no longer exists" in message.get_content()


def test_a_long_reason_is_cut_in_the_subject_only() -> None:
    long = document(to_status="failed", reason="x" * 1000)
    message = compose(long, "alice@example.com", SENDER)
    assert len(message["Subject"]) < 250
    assert str(message["Subject"]).endswith("…")
    assert "x" * 1000 in message.get_content()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", ("mail.example.org", 25, False, False, None, None)),
        ("smtp://mail.example.org:2525", ("mail.example.org", 2525, False, False, None, None)),
        (
            "smtp://u%40x:p%3Aw@mail.example.org:587?starttls=true",
            ("mail.example.org", 587, False, True, "u@x", "p:w"),
        ),
        ("smtps://u:p@mail.example.org", ("mail.example.org", 465, True, False, "u", "p")),
    ],
)
def test_smtp_urls(url: str, expected: tuple[Any, ...]) -> None:
    server = parse_smtp_url(url)
    assert (
        server.host,
        server.port,
        server.implicit_tls,
        server.starttls,
        server.username,
        server.password,
    ) == expected


# -- the address, from the command line ----------------------------------------------------------


BAD_ADDRESSES = ["not-an-address", "a@b.c\nBcc: x@y.z", "a b@c.d", "alice@example.com."]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("keys-email")
    commands = {
        address: (root / str(i) / "data", ["keys", "create", "x", "--email", address], {})
        for i, address in enumerate(BAD_ADDRESSES)
    }
    commands["made"] = (
        new_registry(root / "ok" / "data"),
        ["keys", "create", "alice", "--email", "alice@example.com"],
        {},
    )
    results = run_many(commands)  # side by side: processes are slow
    results["listed"] = bigupload(root / "ok" / "data", "keys", "list")
    return results


def test_keys_create_stores_the_address_and_list_shows_it(
    cli_results: dict[str, Result], tmp_path: Path
) -> None:
    assert cli_results["made"].code == 0, cli_results["made"].stderr
    listed = cli_results["listed"]
    assert listed.code == 0, listed.stderr
    [row] = [line for line in listed.out_lines if " alice " in line]
    assert "alice@example.com" in row


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_keys_create_refuses_an_implausible_address(
    cli_results: dict[str, Result], address: str
) -> None:
    result = cli_results[address]
    assert result.code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert len(result.err_lines) == 1, result.stderr
    assert result.err_lines[0].startswith("bigupload: ")
    assert "e-mail address" in result.err_lines[0]
