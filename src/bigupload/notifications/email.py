"""The ``email`` job: tell a file's owner by e-mail what became of it.

The dispatcher queues one job per status event named in ``email_events`` (``completed`` and
``failed`` by default) when ``smtp_url`` is set; the payload is the notification document. The
address is the owner's: that of their newest unrevoked API key made with one
(``bigupload keys create NAME --owner O --email a@b.c``). An owner without one is skipped.

``smtp_url`` is ``smtp://[user:password@]host[:port]`` (port 25; add ``?starttls=true`` to
upgrade to TLS before logging in) or ``smtps://...`` (TLS from the start, port 465). The
message is sent with the standard library's ``smtplib`` in a thread, so the event loop never
waits on the mail server. A temporary refusal (4xx) or a server that cannot be reached makes the
job try again later; a permanent refusal (5xx) or a configuration the server rejects ends it.

An e-mail cannot be taken back: if the worker dies between the server's acceptance and the
job's completion, the message is sent again on the next attempt, with the same
``Message-ID`` (derived from the event), so a receiver can tell it is a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from bigupload import clock
from bigupload.auth.repository import email_of
from bigupload.client.units import format_size
from bigupload.jobs.kinds import GiveUp, JobContext, JobKind, Retry, exponential_backoff
from bigupload.notifications.dispatch import EMAIL_KIND

log = logging.getLogger("bigupload.notifications.email")

#: Seconds for connecting to the mail server and for each of its answers.
SMTP_TIMEOUT = 30.0
_SUBJECT_REASON_MAX = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


# -- the server ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = None


def parse_smtp_url(url: str) -> SmtpServer:
    """``smtp://[user:password@]host[:port][?starttls=true]`` or ``smtps://...``."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"{url!r} is not an smtp:// or smtps:// URL")
    implicit_tls = parts.scheme == "smtps"
    query = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
    starttls = query.get("starttls", "false") in ("true", "1", "yes")
    return SmtpServer(
        host=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        starttls=starttls and not implicit_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def send(server: SmtpServer, message: EmailMessage) -> None:
    """Deliver ``message`` to ``server`` (blocking: run it in a thread)."""
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if server.implicit_tls:
        client = smtplib.SMTP_SSL(server.host, server.port, timeout=SMTP_TIMEOUT, context=context)
    else:
        client = smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT)
    try:
        if server.starttls:
            client.starttls(context=context)
        if server.username is not None:
            client.login(server.username, server.password or "")
        client.send_message(message)
    except BaseException:
        client.close()
        raise
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()  # the message was accepted; a failed goodbye changes nothing


def _failure(exc: Exception) -> Retry | GiveUp:
    """What an SMTP failure means for the job: try again later, or never."""
    code: int | None = None
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [answer[0] for answer in exc.recipients.values()]
        code = max(codes) if codes else None
        answers = "; ".join(
            f"{address}: {answer[0]} {_text(answer[1])}"
            for address, answer in exc.recipients.items()
        )
        message = f"the mail server refused the recipient ({answers})"
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        message = f"the mail server answered {code} {_text(exc.smtp_error)}"
    elif isinstance(exc, smtplib.SMTPServerDisconnected):
        return Retry(f"the mail server hung up: {exc}", result={"error": str(exc)})
    elif isinstance(exc, smtplib.SMTPException):  # e.g. STARTTLS or AUTH not offered
        return GiveUp(f"the mail server cannot be used as configured: {exc}")
    elif isinstance(exc, ssl.SSLCertVerificationError):
        return GiveUp(f"the mail server's certificate is not trusted: {exc}")
    else:  # OSError: refused, unreachable, timed out, TLS broken mid-way
        return Retry(f"the mail server cannot be reached: {exc}", result={"error": str(exc)})
    result = {"error": message, "smtp_code": code}
    if code is not None and 500 <= code < 600:
        return GiveUp(message, result=result)
    return Retry(message, result=result)


def _text(answer: bytes | str) -> str:
    if isinstance(answer, bytes):
        answer = answer.decode("utf-8", errors="replace")
    return _one_line(answer)


# -- the message --------------------------------------------------------------------------------


def _one_line(text: str, limit: int | None = None) -> str:
    """``text`` on one line (no control characters: nothing can start a new header)."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat


def headline(document: dict[str, Any]) -> str:
    """``report.pdf is completed``, ``report.pdf failed: <reason>``: what happened, in a line."""
    data = document["data"]
    file = data.get("file") or {}
    name = _one_line(str(file.get("filename") or f"file {data['file_id']}"), 150)
    status = str(data["to_status"])
    if status == "failed":
        reason = data.get("reason") or file.get("error") or "no reason given"
        return f"{name} failed: {_one_line(str(reason), _SUBJECT_REASON_MAX)}"
    return f"{name} is {_one_line(status)}"


def message_id(document: dict[str, Any], sender: str) -> str:
    """The same for every attempt at one event's e-mail."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "bigupload.localhost"
    return f"<bigupload.event-{int(document['data']['event_id'])}@{domain}>"


def compose(document: dict[str, Any], recipient: str, sender: str) -> EmailMessage:
    """The e-mail about one event: a short plain-text account of the file."""
    data = document["data"]
    file = data.get("file") or {}
    status = _one_line(str(data["to_status"]))
    lines = [headline(document) + ".", ""]
    rows: list[tuple[str, str]] = []
    if file.get("filename"):
        rows.append(("File", _one_line(str(file["filename"]))))
    was = f" (was {_one_line(str(data['from_status']))})" if data.get("from_status") else ""
    rows.append(("Status", status + was))
    reason = data.get("reason") or (file.get("error") if status == "failed" else None)
    if reason:
        rows.append(("Reason", _one_line(str(reason))))
    size = file.get("stored_size") if file.get("stored_size") is not None else file.get("size")
    if size is not None:
        rows.append(("Size", f"{format_size(size)} ({int(size):,} bytes)"))
    if file.get("detected_content_type") or file.get("content_type"):
        rows.append(
            ("Type", _one_line(str(file.get("detected_content_type") or file["content_type"])))
        )
    rows.append(("File id", str(data["file_id"])))
    rows.append(("When", str(document["timestamp"])))
    rows.append(("Event id", str(data["event_id"])))
    width = max(len(label) for label, _ in rows) + 2
    lines += [f"{label + ':':<{width}}{value}" for label, value in rows]
    if not file:
        lines += ["", "The file's record no longer exists."]
    lines += ["", "-- ", "bigupload"]

    message = EmailMessage()
    message["Subject"] = headline(document)
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = format_datetime(clock.now())
    message["Message-ID"] = message_id(document, sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message["X-Bigupload-Event"] = str(document["type"])
    message.set_content("\n".join(lines) + "\n")
    return message


# -- the job ------------------------------------------------------------------------------------


async def _address(ctx: JobContext, owner: str) -> str | None:
    async with ctx.sessionmaker() as session:
        address = await email_of(session, owner)
        await session.rollback()
    return address


async def _finish(ctx: JobContext, result: dict[str, Any]) -> None:
    async with ctx.sessionmaker() as session, session.begin():
        await ctx.finish(session, result)


async def run_email(ctx: JobContext) -> None:
    document: dict[str, Any] = ctx.payload["document"]
    owner = ctx.owner or str(document["data"]["owner"])
    if not ctx.settings.smtp_url:
        await _finish(ctx, {"skipped": "no SMTP server is configured (BIGUPLOAD_SMTP_URL)"})
        return
    recipient = await _address(ctx, owner)
    if recipient is None:
        await _finish(ctx, {"skipped": f"no e-mail address for {owner}"})
        return
    try:
        server = parse_smtp_url(ctx.settings.smtp_url)
    except ValueError as exc:
        raise GiveUp(str(exc)) from None
    message = compose(document, recipient, ctx.settings.email_from)
    try:
        await asyncio.to_thread(send, server, message)
    except Exception as exc:
        raise _failure(exc) from exc
    await _finish(ctx, {"to": recipient, "message_id": message["Message-ID"]})
    log.info(
        "e-mailed %s about %s of file %s (event %s)",
        recipient,
        document["type"],
        document["data"]["file_id"],
        document["data"]["event_id"],
    )


async def _gave_up(ctx: JobContext, reason: str) -> None:
    document = ctx.payload.get("document") or {}
    log.warning(
        "gave up e-mailing %s about %s of file %s: %s",
        ctx.owner,
        document.get("type"),
        ctx.file_id,
        reason,
    )


def _backoff(attempt: int) -> float:
    return exponential_backoff(attempt, base=30.0, cap=3600.0)


#: 30 s doubling to an hour: a mail server down for a couple of hours is waited for.
EMAIL = JobKind(name=EMAIL_KIND, run=run_email, give_up=_gave_up, backoff=_backoff)
