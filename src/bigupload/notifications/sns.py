"""The ``sns`` job: publish each file event's notification document to an SNS topic.

With ``sns_publish_topic_arn`` set, the dispatcher queues one job per status event. The message
is the document as JSON; its attributes ``event_type`` (``file.completed``), ``status``
(``completed``) and ``owner`` let each subscription filter what it receives. To a FIFO topic
(``....fifo``) the events of one file go in order (message group: the file id) and a retried
publication is dropped as a duplicate (deduplication id: the event id).

The client is boto3's, one per process, made on first use, with boto3's usual credential chain
(as the S3 store's); it needs ``sns:Publish`` on the topic. Its region is the topic's (from its
ARN), else ``s3_region``, else ``us-east-1``; ``aws_endpoint_url`` points it at another
SNS-compatible service (LocalStack, moto). Calls run in a thread, never on the event loop.
Throttling, server errors and an unreachable service make the job try again later; a topic that
does not exist or may not be published to ends it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from bigupload.config import Settings
from bigupload.jobs.kinds import GiveUp, JobContext, JobKind, Retry, exponential_backoff
from bigupload.notifications.dispatch import SNS_KIND
from bigupload.notifications.email import headline

log = logging.getLogger("bigupload.notifications.sns")

_ARN_RE = re.compile(r"^arn:[\w-]+:sns:([a-z0-9-]+):\d*:[\w.-]+$")
_SUBJECT_MAX = 99  # SNS: under 100 printable ASCII characters
_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMSThrottlingException",
    }
)

_clients: dict[tuple[str | None, str], Any] = {}
_clients_lock = threading.Lock()


def topic_region(arn: str, settings: Settings) -> str:
    match = _ARN_RE.match(arn)
    if match:
        return match.group(1)
    return settings.s3_region or "us-east-1"


def sns_client(endpoint_url: str | None, region: str) -> Any:
    """The process's SNS client for that endpoint and region (blocking on first use)."""
    with _clients_lock:
        client = _clients.get((endpoint_url, region))
        if client is None:
            config = Config(
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
            )
            client = boto3.session.Session().client(
                "sns", endpoint_url=endpoint_url, region_name=region, config=config
            )
            _clients[(endpoint_url, region)] = client
    return client


def subject(document: dict[str, Any]) -> str:
    """A short subject (what e-mail subscriptions show): printable ASCII, under 100 characters."""
    text = "".join(c if " " <= c <= "~" else "?" for c in headline(document))
    return text if len(text) <= _SUBJECT_MAX else text[: _SUBJECT_MAX - 3] + "..."


def publish_request(topic_arn: str, document: dict[str, Any]) -> dict[str, Any]:
    """The arguments of ``Publish`` for one document."""
    data = document["data"]
    request: dict[str, Any] = {
        "TopicArn": topic_arn,
        "Message": json.dumps(document, separators=(",", ":"), ensure_ascii=False),
        "Subject": subject(document),
        "MessageAttributes": {
            "event_type": {"DataType": "String", "StringValue": str(document["type"])},
            "status": {"DataType": "String", "StringValue": str(data["to_status"])},
            "owner": {"DataType": "String", "StringValue": str(data["owner"])},
        },
    }
    if topic_arn.endswith(".fifo"):
        request["MessageGroupId"] = str(data["file_id"])
        request["MessageDeduplicationId"] = f"evt_{int(data['event_id'])}"
    return request


def _failure(exc: Exception) -> Retry | GiveUp:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = f"SNS answered {status} {code}: {error.get('Message', '')}".strip()
        result = {"error": message, "code": code, "status": status}
        if code in _RETRYABLE_CODES or status >= 500 or status == 429:
            return Retry(message, result=result)
        return GiveUp(message, result=result)  # AuthorizationError, NotFound, InvalidParameter
    if isinstance(exc, ParamValidationError):
        return GiveUp(f"the message cannot be published: {exc}")
    return Retry(f"SNS cannot be reached: {exc}", result={"error": str(exc)})


async def run_publish(ctx: JobContext) -> None:
    document: dict[str, Any] = ctx.payload["document"]
    topic_arn = ctx.settings.sns_publish_topic_arn
    if not topic_arn:
        async with ctx.sessionmaker() as session, session.begin():
            await ctx.finish(session, {"skipped": "no topic is configured"})
        return
    request = publish_request(topic_arn, document)
    region = topic_region(topic_arn, ctx.settings)
    endpoint_url = ctx.settings.aws_endpoint_url

    def publish() -> str:
        answer = sns_client(endpoint_url, region).publish(**request)
        return str(answer["MessageId"])

    try:
        message_id = await asyncio.to_thread(publish)
    except (ClientError, BotoCoreError) as exc:
        raise _failure(exc) from exc
    async with ctx.sessionmaker() as session, session.begin():
        await ctx.finish(session, {"message_id": message_id, "topic_arn": topic_arn})
    log.info(
        "published %s of file %s (event %s) to %s",
        document["type"],
        document["data"]["file_id"],
        document["data"]["event_id"],
        topic_arn,
    )


async def _gave_up(ctx: JobContext, reason: str) -> None:
    document = ctx.payload.get("document") or {}
    log.warning(
        "gave up publishing %s of file %s to SNS: %s", document.get("type"), ctx.file_id, reason
    )


def _backoff(attempt: int) -> float:
    return exponential_backoff(attempt, base=10.0, cap=1800.0)


#: 10 s doubling to half an hour.
SNS_PUBLISH = JobKind(name=SNS_KIND, run=run_publish, give_up=_gave_up, backoff=_backoff)
