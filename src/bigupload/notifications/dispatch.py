"""The outbox: turn each new file status event into one job per configured notification sink.

Status events are appended in the same transaction as the change they record, so none is lost;
this periodic work claims the ones not yet dispatched, queues their webhook, e-mail and SNS jobs
and marks them dispatched, all in one short transaction. Several processes may run it at once:
on PostgreSQL each claims different events (``FOR UPDATE SKIP LOCKED``), on SQLite writers take
turns, and every job carries a dedupe key besides.

Events of one file reach each endpoint in order: their webhook jobs share an ordering key, and
the queue runs such jobs one at a time in id order. So job ids must follow event ids. A
dispatcher therefore never queues an event of a file while an older event of that file is
claimed by another dispatcher; it leaves it for a later round.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload.config import Settings, WebhookEndpoint
from bigupload.files.models import FileEvent, FileRecord
from bigupload.jobs.kinds import Periodic, PeriodicContext
from bigupload.jobs.queue import enqueue
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


async def dispatch_events(ctx: PeriodicContext, batch: int = 500) -> int:
    """Queue the notification jobs of up to ``batch`` undispatched events; answer how many."""
    async with ctx.sessionmaker() as session, session.begin():
        events = await _claim(session, batch)
        if not events:
            return 0
        events = await _in_order(session, events)
        if _has_sinks(ctx.settings) and events:
            await _enqueue_jobs(session, ctx.settings, events)
        if events:
            await session.execute(
                update(FileEvent)
                .where(FileEvent.id.in_([e.id for e in events]))
                .values(dispatched=True)
                .execution_options(synchronize_session=False)
            )
        return len(events)


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
    for event in events:
        document = event_document(event, records.get(event.file_id))
        for endpoint in endpoints_for(settings, event_type(event.to_status)):
            tag = endpoint_tag(endpoint.url)
            await enqueue(
                session,
                WEBHOOK_KIND,
                {
                    "document": document,
                    "endpoint": endpoint.url,
                    "webhook_id": webhook_id(event.id),
                },
                max_attempts=settings.webhook_max_attempts,
                dedupe_key=f"webhook:{tag}:{event.id}",
                ordering_key=webhook_ordering_key(endpoint.url, event.file_id),
                file_id=event.file_id,
                owner=event.owner,
            )
        if settings.smtp_url and event.to_status in settings.email_events:
            await enqueue(
                session,
                EMAIL_KIND,
                {"document": document},
                max_attempts=settings.job_max_attempts,
                dedupe_key=f"email:{event.id}",
                ordering_key=f"email:{event.file_id}",
                file_id=event.file_id,
                owner=event.owner,
            )
        if settings.sns_publish_topic_arn:
            await enqueue(
                session,
                SNS_KIND,
                {"document": document},
                max_attempts=settings.job_max_attempts,
                dedupe_key=f"sns:{event.id}",
                ordering_key=f"sns:{event.file_id}",  # a file's events in order
                file_id=event.file_id,
                owner=event.owner,
            )


async def _run(ctx: PeriodicContext) -> int:
    return await dispatch_events(ctx)


#: Every ``job_poll_interval`` seconds, in every process that runs jobs, and at once when events
#: are committed (in this process, or on PostgreSQL in any: then every
#: ``job_notify_poll_interval`` seconds besides).
DISPATCH = Periodic(
    name="dispatch",
    interval=lambda settings: settings.job_poll_interval,
    run=_run,
    exclusive=False,
    notified_by=EVENTS,
)
