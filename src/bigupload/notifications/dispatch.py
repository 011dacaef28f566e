"""The outbox: turn each new file status event into one job per configured notification sink.

Status events are appended in the same transaction as the change they record, so none is lost;
this periodic work claims the ones not yet dispatched, queues their webhook, e-mail and SNS jobs
and marks them dispatched, :data:`BATCH` events per short transaction (committed, and the loop
given back to requests, before the next batch: SQLite has one connection). With no sink
configured a batch is one ``UPDATE`` that marks the oldest events dispatched, nothing read.
Several processes may run it at once:
on PostgreSQL each claims different events (``FOR UPDATE SKIP LOCKED``), on SQLite writers take
turns, and every job carries a dedupe key besides.

Events of one file reach each endpoint in order: their webhook jobs share an ordering key, and
the queue runs such jobs one at a time in id order. So job ids must follow event ids. A
dispatcher therefore never queues an event of a file while an older event of that file is
claimed by another dispatcher; it leaves it for a later round.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload.config import Settings, WebhookEndpoint
from bigupload.files.models import FileEvent, FileRecord
from bigupload.jobs.kinds import Periodic, PeriodicContext
from bigupload.jobs.queue import enqueue_many
from bigupload.jobs.wakeups import EVENTS
from bigupload.notifications.documents import event_document, event_type

WEBHOOK_KIND = "webhook"
EMAIL_KIND = "email"
SNS_KIND = "sns"


def endpoint_tag(url: str) -> str:
    """A short, stable name for an endpoint URL, used in job keys."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def webhook_ordering_key(url: str, file_id: uuid.UUID | str) -> str:
    return f"webhook:{endpoint_tag(url)}:{file_id}"


def webhook_id(event_id: int) -> str:
    """The Standard Webhooks message id: the same on every retry and replay of one event."""
    return f"evt_{event_id}"


def endpoints_for(settings: Settings, type_: str) -> list[WebhookEndpoint]:
    return [e for e in settings.webhooks if not e.events or type_ in e.events]


def _has_sinks(settings: Settings) -> bool:
    return bool(settings.webhooks or settings.smtp_url or settings.sns_publish_topic_arn)


#: Events per transaction.
BATCH = 100
#: Batches per round at most; the rest waits for the next round.
MAX_BATCHES = 100


async def dispatch_events(ctx: PeriodicContext, batch: int = BATCH) -> int:
    """Queue the notification jobs of up to ``batch`` undispatched events, in one transaction;
    answer how many events were dispatched."""
    if not _has_sinks(ctx.settings):
        return await _mark_dispatched(ctx, batch)
    async with ctx.sessionmaker() as session, session.begin():
        events = await _claim(session, batch)
        if not events:
            return 0
        events = await _in_order(session, events)
        if events:
            await _enqueue_jobs(session, ctx.settings, events)
            await session.execute(
                update(FileEvent)
                .where(FileEvent.id.in_([e.id for e in events]))
                .values(dispatched=True)
                .execution_options(synchronize_session=False)
            )
        return len(events)


async def _mark_dispatched(ctx: PeriodicContext, batch: int) -> int:
    """No sink: mark the oldest ``batch`` undispatched events dispatched, in one statement."""
    oldest = (
        select(FileEvent.id)
        .where(FileEvent.dispatched.is_(False))
        .order_by(FileEvent.id)
        .limit(batch)
    )
    async with ctx.sessionmaker() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        result = await session.execute(
            update(FileEvent)
            .where(FileEvent.id.in_(oldest.scalar_subquery()))
            .values(dispatched=True)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


async def dispatch_round(ctx: PeriodicContext, batch: int = BATCH) -> int:
    """Dispatch batch after batch (each its own transaction, the loop yielded between them, so
    waiting requests take the registry first) until the backlog is done or
    :data:`MAX_BATCHES` were; answer how many events were dispatched."""
    total = 0
    for _ in range(MAX_BATCHES):
        done = await dispatch_events(ctx, batch)
        total += done
        if done < batch:
            break
        await asyncio.sleep(0)
    return total


async def _claim(session: AsyncSession, batch: int) -> list[FileEvent]:
    query = (
        select(FileEvent).where(FileEvent.dispatched.is_(False)).order_by(FileEvent.id).limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list((await session.execute(query)).scalars().all())


async def _in_order(session: AsyncSession, claimed: Sequence[FileEvent]) -> list[FileEvent]:
    """The claimed events that no older, unclaimed event of the same file precedes.

    An older undispatched event this transaction did not claim is held by another dispatcher
    (claims are made in id order): this file's later events wait for the next round.
    """
    ids = {e.id for e in claimed}
    newest = max(ids)
    blocked_from: dict[uuid.UUID, int] = {}
    rows = await session.execute(
        select(FileEvent.file_id, FileEvent.id).where(
            FileEvent.dispatched.is_(False),
            FileEvent.file_id.in_({e.file_id for e in claimed}),
            FileEvent.id < newest,
            FileEvent.id.not_in(ids),
        )
    )
    for file_id, event_id in rows:
        blocked_from[file_id] = min(event_id, blocked_from.get(file_id, event_id))
    return [e for e in claimed if e.id < blocked_from.get(e.file_id, newest + 1)]


async def _enqueue_jobs(
    session: AsyncSession, settings: Settings, events: Sequence[FileEvent]
) -> None:
    file_ids = {e.file_id for e in events}
    records = {
        r.id: r
        for r in (
            await session.execute(select(FileRecord).where(FileRecord.id.in_(file_ids)))
        ).scalars()
    }
    jobs: list[dict[str, Any]] = []
    for event in events:
        document = event_document(event, records.get(event.file_id))
        about = {"file_id": event.file_id, "owner": event.owner}
        for endpoint in endpoints_for(settings, event_type(event.to_status)):
            tag = endpoint_tag(endpoint.url)
            jobs.append(
                {
                    "kind": WEBHOOK_KIND,
                    "payload": {
                        "document": document,
                        "endpoint": endpoint.url,
                        "webhook_id": webhook_id(event.id),
                    },
                    "max_attempts": settings.webhook_max_attempts,
                    "dedupe_key": f"webhook:{tag}:{event.id}",
                    "ordering_key": webhook_ordering_key(endpoint.url, event.file_id),
                    **about,
                }
            )
        if settings.smtp_url and event.to_status in settings.email_events:
            jobs.append(
                {
                    "kind": EMAIL_KIND,
                    "payload": {"document": document},
                    "max_attempts": settings.job_max_attempts,
                    "dedupe_key": f"email:{event.id}",
                    "ordering_key": f"email:{event.file_id}",
                    **about,
                }
            )
        if settings.sns_publish_topic_arn:
            jobs.append(
                {
                    "kind": SNS_KIND,
                    "payload": {"document": document},
                    "max_attempts": settings.job_max_attempts,
                    "dedupe_key": f"sns:{event.id}",
                    "ordering_key": f"sns:{event.file_id}",  # a file's events in order
                    **about,
                }
            )
    await enqueue_many(session, jobs)  # one statement, in event order (job ids follow)


async def _run(ctx: PeriodicContext) -> int:
    return await dispatch_round(ctx)


#: Every ``job_poll_interval`` seconds, in every process that runs jobs, and when events are
#: committed (in this process, or on PostgreSQL in any: then every ``job_notify_poll_interval``
#: seconds besides), at most once per ``dispatch_gap``: a burst of events takes one round.
DISPATCH = Periodic(
    name="dispatch",
    interval=lambda settings: settings.job_poll_interval,
    run=_run,
    exclusive=False,
    notified_by=EVENTS,
    gap=lambda settings: settings.dispatch_gap,
)
