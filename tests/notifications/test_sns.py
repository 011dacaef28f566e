"""SNS publication end to end: events dispatched and published to a topic on a moto server.

Each topic has an SQS queue subscribed to it, so what SNS delivered can be read back: the SNS
envelope, whose ``Message`` is our document and whose ``MessageAttributes`` carry the event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bigupload.config import Settings
from bigupload.jobs.models import Job, JobStatus
from bigupload.jobs.runner import JobRunner
from bigupload.notifications.dispatch import DISPATCH
from bigupload.notifications.sns import SNS_PUBLISH, publish_request, subject, topic_region
from tests.api.helpers import uploaded
from tests.conftest import Caller, make_settings
from tests.support.moto import MotoServer
from tests.support.net import free_port

DATA = b"quarterly numbers\n" * 64
LIFE = ["pending", "uploaded", "processing", "completed"]


@dataclass
class Topic:
    arn: str
    queue_url: str
    sqs: Any

    def delivered(self) -> list[dict[str, Any]]:
        """Every SNS envelope in the queue (read once; the queue is left empty)."""
        envelopes = []
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = answer.get("Messages", [])
            if not messages:
                return envelopes
            for message in messages:
                envelopes.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


def make_topic(moto: MotoServer, *, fifo: bool = False) -> Topic:
    options = {"endpoint_url": moto.endpoint_url, "region_name": "us-east-1"}
    sns, sqs = boto3.client("sns", **options), boto3.client("sqs", **options)
    name = "bu-" + uuid.uuid4().hex[:12] + (".fifo" if fifo else "")
    attributes = {"FifoTopic": "true"} if fifo else {}
    arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    queue_attributes = {"FifoQueue": "true"} if fifo else {}
    queue_url = sqs.create_queue(QueueName=name, Attributes=queue_attributes)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    return Topic(arn, queue_url, sqs)


@pytest.fixture
def topic(moto_server: MotoServer) -> Topic:
    return make_topic(moto_server)


@pytest.fixture
def settings_overrides(moto_server: MotoServer, topic: Topic) -> dict[str, Any]:
    return {"aws_endpoint_url": moto_server.endpoint_url, "sns_publish_topic_arn": topic.arn}


@dataclass
class Publisher:
    app: FastAPI
    settings: Settings

    async def run(self, **settings: Any) -> int:
        runner = JobRunner(
            sessionmaker=self.app.state.sessionmaker,
            storage=self.app.state.storage,
            settings=self.settings.model_copy(update=settings),
            kinds={SNS_PUBLISH.name: SNS_PUBLISH},
            periodics=[DISPATCH],
        )
        await runner.run_periodic(DISPATCH.name)
        return await runner.run_until_idle()

    async def jobs(self) -> list[Job]:
        async with self.app.state.sessionmaker() as session:
            query = select(Job).where(Job.kind == SNS_PUBLISH.name).order_by(Job.id)
            return list((await session.execute(query)).scalars())


@pytest.fixture
async def publisher(app: FastAPI) -> AsyncIterator[Publisher]:
    yield Publisher(app, app.state.settings)


async def complete(caller: Caller) -> str:
    record = await uploaded(caller, DATA, filename="report.pdf", content_type="application/pdf")
    for step in ("processing", "completed"):
        moved = await caller.put(f"/api/v1/files/{record['id']}/status", json={"status": step})
        assert moved.status_code == 200, moved.text
    file_id: str = record["id"]
    return file_id


# -- publication ----------------------------------------------------------------------------------


async def test_every_event_is_published_with_attributes_to_filter_on(
    alice: Caller, publisher: Publisher, topic: Topic
) -> None:
    file_id = await complete(alice)
    assert await publisher.run() == len(LIFE)

    jobs = await publisher.jobs()
    assert [job.status for job in jobs] == [JobStatus.DONE] * len(LIFE)
    envelopes = topic.delivered()
    assert len(envelopes) == len(LIFE)
    by_event = {}
    for envelope in envelopes:
        assert envelope["Type"] == "Notification"
        assert envelope["TopicArn"] == topic.arn
        document = json.loads(envelope["Message"])
        by_event[document["data"]["event_id"]] = (envelope, document)
    assert sorted(by_event) == [job.payload["document"]["data"]["event_id"] for job in jobs]
    for job in jobs:
        envelope, document = by_event[job.payload["document"]["data"]["event_id"]]
        assert document == job.payload["document"]  # the document, as dispatched
        assert job.result == {"message_id": envelope["MessageId"], "topic_arn": topic.arn}
    documents = [by_event[key][1] for key in sorted(by_event)]
    assert [d["data"]["to_status"] for d in documents] == LIFE
    assert {d["data"]["file_id"] for d in documents} == {file_id}
    assert {d["data"]["owner"] for d in documents} == {"alice"}

    envelope, document = by_event[max(by_event)]
    assert document["type"] == "file.completed"
    assert document["data"]["file"]["filename"] == "report.pdf"
    assert envelope["Subject"] == "report.pdf is completed"
    assert envelope["MessageAttributes"] == {
        "event_type": {"Type": "String", "Value": "file.completed"},
        "status": {"Type": "String", "Value": "completed"},
        "owner": {"Type": "String", "Value": "alice"},
    }

    assert await publisher.run() == 0  # nothing is published twice
    assert topic.delivered() == []


async def test_a_fifo_topic_gets_each_event_once(
    alice: Caller, publisher: Publisher, moto_server: MotoServer
) -> None:
    fifo = make_topic(moto_server, fifo=True)
    await complete(alice)
    assert await publisher.run(sns_publish_topic_arn=fifo.arn) == len(LIFE)
    jobs = await publisher.jobs()
    assert [job.status for job in jobs] == [JobStatus.DONE] * len(LIFE)

    # A retried publication (the worker died before it recorded success) is a duplicate.
    request = publish_request(fifo.arn, jobs[-1].payload["document"])
    assert request["MessageGroupId"] == jobs[-1].payload["document"]["data"]["file_id"]
    boto3.client("sns", endpoint_url=moto_server.endpoint_url, region_name="us-east-1").publish(
        **request
    )
    documents = [json.loads(envelope["Message"]) for envelope in fifo.delivered()]
    documents.sort(key=lambda d: int(d["data"]["event_id"]))
    assert [d["data"]["to_status"] for d in documents] == LIFE


async def test_a_topic_that_does_not_exist_ends_the_job(
    alice: Caller, publisher: Publisher, topic: Topic
) -> None:
    await uploaded(alice, DATA)
    missing = topic.arn + "-gone"
    await publisher.run(sns_publish_topic_arn=missing)
    jobs = await publisher.jobs()
    assert len(jobs) == 2  # pending, uploaded
    for job in jobs:
        assert job.status == JobStatus.DEAD
        assert job.attempts == 1
        assert job.result is not None and job.result["code"] == "NotFound"
        assert "NotFound" in (job.last_error or "")
    assert topic.delivered() == []


async def test_an_unreachable_service_is_tried_again_later(
    alice: Caller, publisher: Publisher, topic: Topic
) -> None:
    await uploaded(alice, DATA)
    await publisher.run(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")  # nothing listens
    jobs = await publisher.jobs()
    # The file's second event waits behind its first: a file's events are published in order.
    assert [(job.status, job.attempts) for job in jobs] == [
        (JobStatus.QUEUED, 1),
        (JobStatus.QUEUED, 0),
    ]
    assert "cannot be reached" in (jobs[0].last_error or "")
    assert topic.delivered() == []


# -- the request, alone ---------------------------------------------------------------------------


def test_the_subject_is_short_printable_ascii() -> None:
    document = {
        "type": "file.failed",
        "timestamp": "2026-01-31T12:00:00Z",
        "data": {
            "event_id": 7,
            "file_id": "f",
            "owner": "alice",
            "from_status": "uploaded",
            "to_status": "failed",
            "reason": "é" * 300,
            "file": {"filename": "résumé\n.pdf"},
        },
    }
    text = subject(document)
    assert len(text) < 100
    assert all(" " <= c <= "~" for c in text), text
    assert text.startswith("r?sum? .pdf failed: ???")
    assert text.endswith("...")
    request = publish_request("arn:aws:sns:eu-west-1:123456789012:files", document)
    assert "MessageGroupId" not in request
    assert json.loads(request["Message"]) == document


def test_the_region_is_the_topics(tmp_path: Any) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite:///x.db", s3_region="eu-central-1")
    assert topic_region("arn:aws:sns:ap-south-1:123456789012:files", settings) == "ap-south-1"
    assert topic_region("not-an-arn", settings) == "eu-central-1"
