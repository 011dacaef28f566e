"""Consume storage events from an SQS queue (``bigupload worker --sqs-queue-url URL``).

The queue receives S3 event notifications straight from the bucket, or through an SNS topic
(the SNS envelope, when the subscription does not use raw delivery). Messages on a queue are
trusted as the queue's IAM policy allows: SNS envelopes are not signature-checked here.

Each message is handled on its own:

- handled -> deleted;
- the store or the registry failed -> left on the queue: SQS delivers it again once its
  visibility timeout has passed (handling is idempotent, so a repeat is harmless);
- not a storage event bigupload understands -> logged at ERROR and deleted: it can never
  succeed, and left on the queue it would come back forever (use a dead-letter queue on the
  queue itself if such messages must be kept).

Every boto3 call runs in a worker thread; the client uses boto3's usual credential chain (the
same as the S3 adapter), ``settings.aws_endpoint_url`` and ``settings.s3_region`` (or
``us-east-1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.exc import SQLAlchemyError

from bigupload.config import Settings
from bigupload.errors import AppError
from bigupload.storage_events.parse import InvalidEvent, ObjectEvent, parse_body

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger("bigupload.storage_events.sqs")

#: SQS's longest long poll.
MAX_WAIT_SECONDS = 20
#: After a failed receive (SQS unreachable), wait this long before the next.
ERROR_BACKOFF = 5.0

Handler = Callable[[Sequence[ObjectEvent]], Awaitable[object]]


def build_sqs_client(settings: Settings, *, wait_seconds: int = MAX_WAIT_SECONDS) -> SQSClient:
    """An SQS client for the configured endpoint and region, from boto3's credential chain."""
    config = Config(
        connect_timeout=5,
        read_timeout=wait_seconds + 10,  # a long poll answers after up to wait_seconds
        retries={"max_attempts": 3, "mode": "standard"},
    )
    session = boto3.session.Session()
    client: SQSClient = session.client(
        "sqs",
        endpoint_url=settings.aws_endpoint_url,
        region_name=settings.s3_region or "us-east-1",
        config=config,
    )
    return client


class SqsConsumer:
    """Receives messages from ``queue_url`` and hands their events to ``handle``."""

    def __init__(
        self,
        settings: Settings,
        queue_url: str,
        handle: Handler,
        *,
        wait_seconds: int = MAX_WAIT_SECONDS,
        max_messages: int = 10,
        visibility_timeout: int | None = None,
        client: SQSClient | None = None,
    ) -> None:
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_seconds must be between 0 and {MAX_WAIT_SECONDS}")
        if not 1 <= max_messages <= 10:
            raise ValueError("max_messages must be between 1 and 10")
        self.queue_url = queue_url
        self.handle = handle
        self.wait_seconds = wait_seconds
        self.max_messages = max_messages
        #: How long a received message stays hidden (the queue's own setting if ``None``):
        #: longer than handling one message may take.
        self.visibility_timeout = visibility_timeout
        self.client: SQSClient = client or build_sqs_client(settings, wait_seconds=wait_seconds)

    async def poll_once(self) -> int:
        """Receive one batch (long polling up to ``wait_seconds``) and handle each message.

        Answers how many messages were received. Raises if the queue cannot be read (the
        messages then stay on it).
        """
        messages = await self._receive_batch()
        for message in messages:
            await self._one(message)
        return len(messages)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set. A long poll in flight is abandoned at once (whatever it
        receives becomes visible again after the visibility timeout); messages already
        received are handled to the end."""
        log.info("consuming storage events from %s", self.queue_url)
        while not stop.is_set():
            receiving = asyncio.ensure_future(self._receive_batch())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not receiving.done():
                    receiving.cancel()
                    await asyncio.gather(receiving, return_exceptions=True)
            if receiving.cancelled():
                break
            error = receiving.exception()
            if error is not None:
                log.error("could not receive from %s: %s", self.queue_url, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), ERROR_BACKOFF)
                continue
            for message in receiving.result():
                await self._one(message)
        log.info("stopped consuming storage events from %s", self.queue_url)

    async def _receive_batch(self) -> list[MessageTypeDef]:
        return await anyio.to_thread.run_sync(self._receive, abandon_on_cancel=True)

    def _receive(self) -> list[MessageTypeDef]:
        kwargs: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": self.max_messages,
            "WaitTimeSeconds": self.wait_seconds,
        }
        if self.visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = self.visibility_timeout
        return list(self.client.receive_message(**kwargs).get("Messages", []))

    def _delete(self, receipt: str) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)

    async def _one(self, message: MessageTypeDef) -> None:
        message_id = message.get("MessageId", "?")
        try:
            events = parse_body(message.get("Body", ""))
        except InvalidEvent as exc:
            log.error(
                "SQS message %s is not a storage event and can never be handled: %s; deleted",
                message_id,
                exc,
            )
        else:
            try:
                await self.handle(events)
            except (AppError, SQLAlchemyError, OSError) as exc:
                log.warning(
                    "SQS message %s could not be handled now (%s: %s): left on the queue for "
                    "redelivery",
                    message_id,
                    type(exc).__name__,
                    exc,
                )
                return
            except Exception:
                log.exception(
                    "SQS message %s could not be handled: left on the queue for redelivery",
                    message_id,
                )
                return
        try:
            await anyio.to_thread.run_sync(self._delete, message["ReceiptHandle"])
        except (BotoCoreError, ClientError) as exc:
            # Handled all the same: a redelivery finds nothing more to do.
            log.warning(
                "SQS message %s could not be deleted (%s): it will come again", message_id, exc
            )
