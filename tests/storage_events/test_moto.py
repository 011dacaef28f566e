"""Real notifications from a real S3 server (moto over HTTP): S3 -> SQS, S3 -> SNS -> SQS, and
S3 -> SNS -> an HTTP subscription of a real bigupload server on loopback.

moto sends keys URL-encoded, a test event when notifications are configured, and an extra
``ObjectCreated:Put`` beside ``CompleteMultipartUpload``; its SNS messages are signed by a key
whose certificate URL points at Amazon, which nothing here can (or may) fetch, so a bigupload
server refuses them: proof that an unauthenticated message changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi import FastAPI

from bigupload.app import create_app
from bigupload.config import load_settings
from bigupload.errors import StorageUnavailable
from bigupload.storage.s3 import S3Storage
from bigupload.storage_events.handler import EventReport, event_handler
from bigupload.storage_events.parse import ObjectEvent
from bigupload.storage_events.sqs import SqsConsumer
from tests.api.helpers import upload_request
from tests.api.test_complete import events_of
from tests.conftest import SECRET, Caller, make_bucket
from tests.storage_events.helpers import LOOPBACK_CERT_PATTERN
from tests.support.live import LiveServer
from tests.support.moto import MotoServer, s3_client
from tests.support.net import free_port
from tests.support.service import prepare_registry

DATA = b"moto-event " * 500
POLLS = 10  # a bound against hanging; moto queues a notification before the PUT answers


@pytest.fixture
def storage(moto_store: S3Storage) -> S3Storage:
    return moto_store


@pytest.fixture
def settings_overrides(moto_server: MotoServer) -> dict[str, Any]:
    return {"aws_endpoint_url": moto_server.endpoint_url, "s3_region": "us-east-1"}


def aws(service: str, moto_server: MotoServer) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=moto_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@dataclass
class Queue:
    url: str
    arn: str
    sqs: Any

    def bodies(self) -> list[str]:
        """What is visible on the queue now (the queue hides nothing: visibility timeout 0)."""
        answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10)
        return [m["Body"] for m in answer.get("Messages", [])]


@pytest.fixture
def queue(moto_server: MotoServer) -> Iterator[Queue]:
    sqs = aws("sqs", moto_server)
    # A received message that is not deleted is visible again at once: redelivery without waiting.
    url = sqs.create_queue(
        QueueName="bu-" + uuid.uuid4().hex[:16], Attributes={"VisibilityTimeout": "0"}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    yield Queue(url, arn, sqs)
    sqs.delete_queue(QueueUrl=url)


@dataclass
class Recorded:
    """The app's event handler, recording each report."""

    app: FastAPI
    reports: list[EventReport]

    async def __call__(self, events: Sequence[ObjectEvent]) -> EventReport:
        handle = event_handler(
            sessionmaker=self.app.state.sessionmaker,
            storage=self.app.state.storage,
            settings=self.app.state.settings,
        )
        report = await handle(events)
        self.reports.append(report)
        return report

    def total(self) -> dict[str, int]:
        total = EventReport()
        for report in self.reports:
            total += report
        return {k: v for k, v in total.counts().items() if v}


@pytest.fixture
def handler(app: FastAPI) -> Recorded:
    return Recorded(app, [])


def consumer_for(app: FastAPI, queue: Queue, handle: Any) -> SqsConsumer:
    return SqsConsumer(app.state.settings, queue.url, handle, wait_seconds=1)


@pytest.fixture
async def store_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def notify_queue(storage: S3Storage, moto_server: MotoServer, queue: Queue) -> None:
    s3_client(moto_server.endpoint_url).put_bucket_notification_configuration(
        Bucket=storage.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": queue.arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )


async def put_upload(caller: Caller, http: httpx.AsyncClient) -> dict[str, Any]:
    response = await caller.post("/api/v1/uploads", json=upload_request(DATA))
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    put = await http.put(ticket["url"], content=DATA, headers=ticket["headers"])
    assert put.status_code == 200, put.text
    return ticket


async def status_of(caller: Caller, file_id: str) -> str:
    status: str = (await caller.get(f"/api/v1/files/{file_id}")).json()["status"]
    return status


async def receive(consumer: SqsConsumer, expected: int) -> int:
    """Poll until ``expected`` messages were received (never waiting on an empty queue once
    they were); answer how many were."""
    received = 0
    for _ in range(POLLS):
        if received >= expected:
            break
        received += await consumer.poll_once()
    return received


async def test_s3_to_sqs_confirms_a_put_upload_without_complete(
    app: FastAPI,
    alice: Caller,
    storage: S3Storage,
    moto_server: MotoServer,
    queue: Queue,
    handler: Recorded,
    store_http: httpx.AsyncClient,
) -> None:
    notify_queue(storage, moto_server, queue)
    consumer = consumer_for(app, queue, handler)
    assert await receive(consumer, 1) == 1  # moto's s3:TestEvent: handled, deleted
    ticket = await put_upload(alice, store_http)
    assert await status_of(alice, ticket["id"]) == "pending"
    assert await receive(consumer, 1) == 1
    assert handler.total() == {"confirmed": 1}
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert record["status"] == "uploaded"
    assert record["stored_size"] == len(DATA)
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]
    assert queue.bodies() == []


async def test_s3_to_sns_to_sqs_envelope_confirms_the_upload(
    app: FastAPI,
    alice: Caller,
    storage: S3Storage,
    moto_server: MotoServer,
    queue: Queue,
    handler: Recorded,
    store_http: httpx.AsyncClient,
) -> None:
    sns = aws("sns", moto_server)
    topic = sns.create_topic(Name="bu-" + uuid.uuid4().hex[:16])["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue.arn)
    s3_client(moto_server.endpoint_url).put_bucket_notification_configuration(
        Bucket=storage.bucket,
        NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    consumer = consumer_for(app, queue, handler)
    assert await receive(consumer, 1) == 1  # the test event, in an envelope
    ticket = await put_upload(alice, store_http)
    (body,) = queue.bodies()  # seen, not deleted: visible again at once
    envelope = json.loads(body)
    assert envelope["Type"] == "Notification"
    assert envelope["TopicArn"] == topic
    assert "Records" in json.loads(envelope["Message"])
    assert await receive(consumer, 1) == 1
    assert handler.total() == {"confirmed": 1}
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]
    assert queue.bodies() == []


async def test_a_multipart_upload_completed_in_the_store_directly_is_confirmed_once(
    app: FastAPI,
    alice: Caller,
    storage: S3Storage,
    moto_server: MotoServer,
    queue: Queue,
    handler: Recorded,
    store_http: httpx.AsyncClient,
) -> None:
    notify_queue(storage, moto_server, queue)
    consumer = consumer_for(app, queue, handler)
    assert await receive(consumer, 1) == 1
    response = await alice.post("/api/v1/uploads", json=upload_request(DATA, multipart=True))
    assert response.status_code == 201, response.text
    ticket = response.json()
    assert ticket["part_count"] == 1
    signed = await alice.post(f"/api/v1/uploads/{ticket['id']}/parts", json={"part_numbers": [1]})
    (part,) = signed.json()["parts"]
    put = await store_http.put(part["url"], content=DATA, headers=part["headers"])
    assert put.status_code == 200
    # Someone completes the upload talking to the store, not to bigupload.
    s3_client(moto_server.endpoint_url).complete_multipart_upload(
        Bucket=storage.bucket,
        Key=ticket["key"],
        UploadId=ticket["upload_id"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": put.headers["etag"]}]},
    )
    # moto sends ObjectCreated:Put beside ObjectCreated:CompleteMultipartUpload.
    assert await receive(consumer, 2) == 2
    assert handler.total() == {"confirmed": 1, "duplicate": 1}
    assert queue.bodies() == []
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert record["status"] == "uploaded"
    assert record["stored_size"] == len(DATA)
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


class TestConsumer:
    """How the consumer treats its queue; the registry plays no part: SQLite only."""

    @pytest.fixture
    def database_url(self, tmp_path: Path) -> str:
        return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"

    async def test_a_message_that_failed_is_redelivered_and_then_deleted(
        self,
        app: FastAPI,
        alice: Caller,
        storage: S3Storage,
        moto_server: MotoServer,
        queue: Queue,
        handler: Recorded,
        store_http: httpx.AsyncClient,
    ) -> None:
        notify_queue(storage, moto_server, queue)
        assert await receive(consumer_for(app, queue, handler), 1) == 1
        failures = []

        async def store_down_once(events: Sequence[ObjectEvent]) -> EventReport:
            if not failures:
                failures.append(events)
                raise StorageUnavailable()
            return await handler(events)

        consumer = consumer_for(app, queue, store_down_once)
        ticket = await put_upload(alice, store_http)
        assert await consumer.poll_once() == 1
        assert len(failures) == 1
        assert await status_of(alice, ticket["id"]) == "pending"
        assert len(queue.bodies()) == 1  # left on the queue
        assert await receive(consumer, 1) == 1
        assert await status_of(alice, ticket["id"]) == "uploaded"
        assert queue.bodies() == []

    async def test_an_unparsable_message_is_logged_and_deleted(
        self, app: FastAPI, queue: Queue, handler: Recorded, caplog: pytest.LogCaptureFixture
    ) -> None:
        queue.sqs.send_message(QueueUrl=queue.url, MessageBody="this is not an event")
        consumer = consumer_for(app, queue, handler)
        with caplog.at_level(logging.ERROR, logger="bigupload.storage_events"):
            assert await consumer.poll_once() == 1
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "can never be handled" in errors[0].getMessage()
        assert handler.reports == []
        assert queue.bodies() == []

    async def test_run_consumes_until_stopped(
        self,
        app: FastAPI,
        alice: Caller,
        storage: S3Storage,
        moto_server: MotoServer,
        queue: Queue,
        handler: Recorded,
        store_http: httpx.AsyncClient,
    ) -> None:
        notify_queue(storage, moto_server, queue)
        consumer = consumer_for(app, queue, handler)
        stop = asyncio.Event()
        running = asyncio.create_task(consumer.run(stop))
        ticket = await put_upload(alice, store_http)
        for _ in range(1000):  # bounded: until the consumer has seen the upload's event
            if handler.total().get("confirmed"):
                break
            await asyncio.sleep(0.01)
        assert await status_of(alice, ticket["id"]) == "uploaded"
        stop.set()
        await asyncio.wait_for(running, 10)  # a long poll in flight is abandoned, not awaited


# -- S3 -> SNS -> HTTP subscription of a live bigupload -----------------------------------------


class Recorder:
    """ASGI wrapper that keeps the answers given to ``POST /api/v1/storage-events``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/v1/storage-events":
            await self.app(scope, receive, send)
            return
        status: list[int] = []
        chunks: list[bytes] = []

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        with self.lock:
            self.answers.append((status[0], json.loads(b"".join(chunks))))

    def wait_for(self, count: int) -> list[tuple[int, dict[str, Any]]]:
        deadline = time.monotonic() + 15
        while True:
            with self.lock:
                if len(self.answers) >= count:
                    return list(self.answers)
            if time.monotonic() > deadline:
                pytest.fail(f"expected {count} deliveries, got {self.answers}")
            time.sleep(0.02)


def test_moto_sns_http_deliveries_are_refused_and_change_nothing(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    s3 = s3_client(moto_server.endpoint_url)
    sns = aws("sns", moto_server)
    bucket = make_bucket(s3)
    topic = sns.create_topic(Name="bu-" + uuid.uuid4().hex[:16])["TopicArn"]
    port = free_port()
    settings = load_settings(
        data_dir=tmp_path / "data",
        secret_key=SECRET,
        port=port,
        rate_limit="off",
        storage="s3",
        s3_endpoint_url=moto_server.endpoint_url,
        s3_region="us-east-1",
        s3_bucket=bucket,
        run_jobs=False,
        # The topic is allowed: only the signature can refuse moto's messages. Its
        # certificate URL names Amazon, which a test must not fetch: only loopback is allowed.
        sns_topic_arns=(topic,),
        sns_cert_url_pattern=LOOPBACK_CERT_PATTERN,
        storage_events_token="storage-events-" + "t" * 32,
    )
    settings.data_dir.mkdir(parents=True)
    api_key = asyncio.run(prepare_registry(settings.effective_database_url))
    recorder = Recorder(create_app(settings))
    live = LiveServer(recorder, port).start()
    try:
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=f"{live.url}/api/v1/storage-events")
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        with httpx.Client(
            base_url=live.url, headers={"Authorization": f"Bearer {api_key}"}
        ) as http:
            ticket = http.post("/api/v1/uploads", json=upload_request(DATA)).json()
            put = httpx.put(ticket["url"], content=DATA, headers=ticket["headers"])
            assert put.status_code == 200
            # moto posted the test event, then the ObjectCreated:Put notification.
            answers = recorder.wait_for(2)
            assert [status for status, _ in answers] == [403, 403]
            for _, body in answers:
                assert body["error"]["code"] == "sns_signature_invalid"
                assert "SigningCertURL" in body["error"]["message"]
            record = http.get(f"/api/v1/files/{ticket['id']}").json()
            assert record["status"] == "pending"
            assert record["uploaded_at"] is None
    finally:
        live.stop()
