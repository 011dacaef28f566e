"""Webhooks: the ``webhook`` job kind, which POSTs a signed notification document to one
endpoint (the Standard Webhooks scheme), and the delivery log those jobs make.

Each job carries the document, the endpoint's URL and a ``webhook_id`` that stays the same on
every retry and replay, so a receiver can drop duplicates. The endpoint's secret is looked up in
the configuration when the job runs: secrets never sit in the queue, and an endpoint removed
from the configuration stops receiving.

A delivery is the job: ``pending`` while queued or running, ``delivered`` once a 2xx came back,
``failed`` once it gave up (out of attempts, or the receiver answered 410 Gone).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import time
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook

from bigupload import __version__, clock
from bigupload.config import Settings, WebhookEndpoint
from bigupload.jobs.kinds import GiveUp, JobContext, JobKind, Retry
from bigupload.jobs.models import Job, JobStatus
from bigupload.jobs.queue import enqueue
from bigupload.notifications.delivery_status import DeliveryStatus
from bigupload.notifications.dispatch import WEBHOOK_KIND

#: Seconds to wait after failed attempt 1, 2, ...; the last step repeats (as Svix does).
BACKOFF_SCHEDULE: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)
#: The longest wait a receiver's ``Retry-After`` may ask for.
RETRY_AFTER_CAP = 36000.0
#: How much of a receiver's answer the delivery log keeps.
RESPONSE_EXCERPT = 1024


def webhook_backoff(attempt: int) -> float:
    """5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, ... after failed attempt 1, 2, 3, ..."""
    return BACKOFF_SCHEDULE[min(max(attempt, 1), len(BACKOFF_SCHEDULE)) - 1]


def find_endpoint(settings: Settings, url: str) -> WebhookEndpoint | None:
    return next((e for e in settings.webhooks if e.url == url), None)


def encode_document(document: dict[str, Any]) -> str:
    """Compact JSON: exactly the text that is signed and sent (as UTF-8)."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def signed_headers(secret: str, webhook_id: str, moment: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for ``body`` sent at ``moment`` (whole seconds)."""
    seconds = math.floor(moment.timestamp())
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(seconds, UTC), body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": f"bigupload/{__version__}",
    }


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now, capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - clock.now()).total_seconds()
    return min(max(seconds, 1.0), RETRY_AFTER_CAP)


class _SharedClient:
    """One connection pool per process (per event loop: a pool cannot cross loops)."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._loop is not loop:
            self._client = httpx.AsyncClient(follow_redirects=False)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()


_clients = _SharedClient()


async def close_http_client() -> None:
    """Close this process's webhook connections (at shutdown; a later send opens new ones)."""
    await _clients.aclose()


async def _post(
    url: str, body: bytes, headers: dict[str, str], seconds: float
) -> tuple[httpx.Response, str]:
    """POST within ``seconds`` in all; the answer and the first KiB of its body."""
    client = _clients.get()
    async with (
        asyncio.timeout(seconds),
        client.stream("POST", url, content=body, headers=headers, timeout=seconds) as response,
    ):
        excerpt = bytearray()
        async for chunk in response.aiter_bytes():
            excerpt += chunk
            if len(excerpt) >= RESPONSE_EXCERPT:
                break
    return response, bytes(excerpt[:RESPONSE_EXCERPT]).decode("utf-8", errors="replace")


async def deliver(ctx: JobContext) -> None:
    """One attempt at one webhook delivery."""
    url = ctx.payload.get("endpoint")
    webhook_id = ctx.payload.get("webhook_id")
    document = ctx.payload.get("document")
    if not (isinstance(url, str) and isinstance(webhook_id, str) and isinstance(document, dict)):
        raise GiveUp("malformed webhook job: it needs an endpoint, a webhook_id and a document")
    endpoint = find_endpoint(ctx.settings, url)
    if endpoint is None:
        raise GiveUp("endpoint no longer configured")
    body = encode_document(document)
    headers = signed_headers(endpoint.secret, webhook_id, clock.now(), body)
    timeout = ctx.settings.webhook_timeout_seconds
    started = time.perf_counter()

    def result(status_code: int | None, response: str | None) -> dict[str, Any]:
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return {"status_code": status_code, "duration_ms": duration_ms, "response": response}

    try:
        answer, excerpt = await _post(url, body.encode(), headers, timeout)
    except (httpx.TimeoutException, TimeoutError):
        raise Retry(f"no answer within {timeout:g} s", result=result(None, None)) from None
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise Retry(f"could not reach the endpoint: {reason}", result=result(None, None)) from None
    outcome = result(answer.status_code, excerpt)
    status = answer.status_code
    if 200 <= status < 300:
        async with ctx.sessionmaker() as session:
            await ctx.finish(session, outcome)
            await session.commit()
        return
    if status == 410:
        raise GiveUp("the endpoint answered 410 Gone: it asked not to be sent more", result=outcome)
    after = retry_after_seconds(answer.headers.get("retry-after")) if status in (429, 503) else None
    raise Retry(f"the endpoint answered {status}", after=after, result=outcome)


WEBHOOK = JobKind(name=WEBHOOK_KIND, run=deliver, backoff=webhook_backoff)


# -- the delivery log ---------------------------------------------------------------------------


_JOB_STATUSES: dict[DeliveryStatus, tuple[JobStatus, ...]] = {
    DeliveryStatus.PENDING: (JobStatus.QUEUED, JobStatus.RUNNING),
    DeliveryStatus.DELIVERED: (JobStatus.DONE,),
    DeliveryStatus.FAILED: (JobStatus.DEAD,),
}


def delivery_status(job: Job) -> DeliveryStatus:
    for status, job_statuses in _JOB_STATUSES.items():
        if job.status in job_statuses:
            return status
    raise ValueError(f"job {job.id} has an unknown status {job.status!r}")


class InvalidCursor(ValueError):
    """A pagination cursor we did not make."""


def encode_cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(f"d{job.id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("d") or not raw[1:].isdigit():
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor(cursor) from exc


async def list_deliveries(
    session: AsyncSession,
    *,
    owner: str | None,
    limit: int,
    status: DeliveryStatus | None = None,
    file_id: uuid.UUID | None = None,
    cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    """One page of deliveries, newest first, and the next page's cursor.

    ``owner`` ``None`` lists every owner's (the operator's view).
    """
    query = select(Job).where(Job.kind == WEBHOOK_KIND)
    if owner is not None:
        query = query.where(Job.owner == owner)
    if status is not None:
        query = query.where(Job.status.in_([s.value for s in _JOB_STATUSES[status]]))
    if file_id is not None:
        query = query.where(Job.file_id == file_id)
    if cursor:
        query = query.where(Job.id < decode_cursor(cursor))
    rows = list((await session.execute(query.order_by(Job.id.desc()).limit(limit + 1))).scalars())
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def get_delivery(session: AsyncSession, delivery_id: int, owner: str | None) -> Job | None:
    """One delivery; another owner's is as missing as one that never was."""
    query = select(Job).where(Job.id == delivery_id, Job.kind == WEBHOOK_KIND)
    if owner is not None:
        query = query.where(Job.owner == owner)
    return (await session.execute(query)).scalar_one_or_none()


class ReplayRefused(Exception):
    """Why a delivery cannot be replayed, with a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def replay(session: AsyncSession, job: Job, settings: Settings) -> Job:
    """Queue the delivery again: same document, same ``webhook_id``, same order as the file's
    other deliveries to that endpoint. Answers the new delivery (flushed, not committed)."""
    if delivery_status(job) is DeliveryStatus.PENDING:
        raise ReplayRefused(
            "delivery_pending", f"delivery {job.id} is still pending; replay it once it ends"
        )
    url = job.payload.get("endpoint")
    if not isinstance(url, str) or find_endpoint(settings, url) is None:
        raise ReplayRefused(
            "endpoint_not_configured",
            f"the endpoint of delivery {job.id} is no longer configured",
        )
    await enqueue(
        session,
        WEBHOOK_KIND,
        dict(job.payload),
        max_attempts=settings.webhook_max_attempts,
        file_id=job.file_id,
        owner=job.owner,
        ordering_key=job.ordering_key,
    )
    # enqueue does not answer the row; the new one is the newest undeduplicated job of this
    # ordering key carrying the same message (replays of one delivery are alike anyway).
    candidates = await session.execute(
        select(Job)
        .where(
            Job.kind == WEBHOOK_KIND,
            Job.id > job.id,
            Job.dedupe_key.is_(None),
            Job.ordering_key.is_(None)
            if job.ordering_key is None
            else Job.ordering_key == job.ordering_key,
        )
        .order_by(Job.id.desc())
        .limit(20)
    )
    webhook_id = job.payload.get("webhook_id")
    for candidate in candidates.scalars():
        if candidate.payload.get("webhook_id") == webhook_id:
            return candidate
    raise RuntimeError(f"the replay of delivery {job.id} was queued but cannot be found")
