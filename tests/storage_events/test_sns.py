"""SNS HTTP(S) subscriptions: signatures verified exactly as AWS documents them.

A look-alike of SNS (its own RSA key, a self-signed certificate served on loopback) signs
messages as AWS does, with SignatureVersion 1 (SHA1withRSA) and 2 (SHA256withRSA); the
certificate URL pattern is widened to that loopback server. Anything not provably from an
allowed topic is refused with 403 and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bigupload import clock
from bigupload.storage.local import LocalStorage
from tests.api.helpers import send, start
from tests.api.test_complete import events_of
from tests.conftest import Caller
from tests.storage_events.helpers import (
    LOOPBACK_CERT_PATTERN,
    OTHER_TOPIC,
    TOPIC,
    FakeSns,
    fake_sns,
    s3_record,
)
from tests.support.net import free_port

URL = "/api/v1/storage-events"
DATA = b"sns" * 1000
TOKEN = "storage-events-" + "t" * 32


@pytest.fixture(scope="module")
def sns() -> Iterator[FakeSns]:
    with fake_sns() as server:
        yield server


@pytest.fixture(autouse=True)
def _forget_requests(sns: FakeSns) -> None:
    sns.seen.clear()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "sns_topic_arns": (TOPIC,),
        "sns_cert_url_pattern": LOOPBACK_CERT_PATTERN,
        "storage_events_token": TOKEN,
    }


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"


async def post_sns(
    http: httpx.AsyncClient, message: dict[str, Any], *, header: bool = True, **headers: str
) -> httpx.Response:
    """As SNS posts: JSON sent as text/plain, the type in ``x-amz-sns-message-type``."""
    sent = {"Content-Type": "text/plain; charset=UTF-8", **headers}
    if header:
        sent["x-amz-sns-message-type"] = message["Type"]
    return await http.post(URL, content=json.dumps(message).encode(), headers=sent)


def s3_event(bucket: str, key: str) -> str:
    return json.dumps({"Records": [s3_record(bucket, key)]})


async def pending_with_bytes(caller: Caller) -> dict[str, Any]:
    ticket = await start(caller, DATA)
    assert (await send(caller.http, ticket, DATA)).status_code == 200
    return ticket


async def assert_pending(app: FastAPI, caller: Caller, ticket: dict[str, Any]) -> None:
    assert (await caller.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"
    assert await events_of(app, ticket["id"]) == [(None, "pending")]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_signed_notification_confirms_the_file(
    app: FastAPI, alice: Caller, storage: LocalStorage, sns: FakeSns, version: str
) -> None:
    ticket = await pending_with_bytes(alice)
    message = sns.sign(sns.notification(s3_event(storage.bucket, ticket["key"])), version)
    response = await post_sns(alice.http, message)
    assert response.status_code == 200, response.text
    assert response.json()["confirmed"] == 1
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "uploaded"
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]
    assert sns.seen == ["/SimpleNotificationService-test.pem"]
    # The certificate is kept: a second message does not fetch it again.
    again = await post_sns(alice.http, message)
    assert again.json()["duplicate"] == 1
    assert sns.seen == ["/SimpleNotificationService-test.pem"]


class TestRefusals:
    """Only the registry's state matters here, not which registry: SQLite only."""

    @pytest.fixture
    def database_url(self, sqlite_url: str) -> str:
        return sqlite_url

    @pytest.mark.parametrize("version", ["1", "2"])
    async def test_a_subscription_is_confirmed_after_verifying_it(
        self, alice: Caller, sns: FakeSns, version: str
    ) -> None:
        message = sns.sign(sns.confirmation(), version)
        response = await post_sns(alice.http, message)
        assert response.status_code == 200, response.text
        assert response.json()["subscription"] == "confirmed"
        subscribe_path = message["SubscribeURL"].removeprefix(sns.base_url)
        assert sns.seen == ["/SimpleNotificationService-test.pem", subscribe_path]

    async def test_an_unsubscribe_confirmation_is_verified_and_not_followed(
        self, alice: Caller, sns: FakeSns
    ) -> None:
        message = sns.sign(sns.confirmation("UnsubscribeConfirmation"))
        response = await post_sns(alice.http, message)
        assert response.status_code == 200, response.text
        assert response.json()["subscription"] == "unsubscribed"
        assert sns.seen == ["/SimpleNotificationService-test.pem"]

    async def test_a_subscribe_url_elsewhere_is_never_visited(
        self, alice: Caller, sns: FakeSns
    ) -> None:
        confirmation = sns.confirmation()
        confirmation["SubscribeURL"] = "http://127.0.0.2:9/?Action=ConfirmSubscription"
        response = await post_sns(alice.http, sns.sign(confirmation))
        assert error_of(response, 403)["code"] == "sns_signature_invalid"
        assert sns.seen == ["/SimpleNotificationService-test.pem"]

    async def test_a_tampered_notification_is_403(
        self, app: FastAPI, alice: Caller, storage: LocalStorage, sns: FakeSns
    ) -> None:
        ticket = await pending_with_bytes(alice)
        other = await pending_with_bytes(alice)
        message = sns.sign(sns.notification(s3_event(storage.bucket, other["key"])))
        message["Message"] = s3_event(storage.bucket, ticket["key"])
        error = error_of(await post_sns(alice.http, message), 403)
        assert error["code"] == "sns_signature_invalid"
        assert error["message"] == "the SNS message's signature does not match its content"
        await assert_pending(app, alice, ticket)
        await assert_pending(app, alice, other)

    async def test_a_message_signed_by_another_key_is_403(
        self, app: FastAPI, alice: Caller, storage: LocalStorage, sns: FakeSns
    ) -> None:
        ticket = await pending_with_bytes(alice)
        with fake_sns() as impostor:
            message = impostor.sign(impostor.notification(s3_event(storage.bucket, ticket["key"])))
        message["SigningCertURL"] = sns.cert_url  # the real certificate, a forged signature
        error = error_of(await post_sns(alice.http, message), 403)
        assert error["code"] == "sns_signature_invalid"
        await assert_pending(app, alice, ticket)

    async def test_a_topic_not_configured_is_403(
        self, app: FastAPI, alice: Caller, storage: LocalStorage, sns: FakeSns
    ) -> None:
        ticket = await pending_with_bytes(alice)
        notification = sns.notification(s3_event(storage.bucket, ticket["key"]), topic=OTHER_TOPIC)
        error = error_of(await post_sns(alice.http, sns.sign(notification)), 403)
        assert error["code"] == "sns_topic_not_allowed"
        assert error["details"] == {"topic_arn": OTHER_TOPIC}
        assert sns.seen == []  # refused before anything was fetched
        await assert_pending(app, alice, ticket)

    @pytest.mark.parametrize(
        "cert_url",
        [
            "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
            "http://localhost:{port}/SimpleNotificationService-test.pem",
            "http://127.0.0.1:{port}/SimpleNotificationService-test.pem?x=.pem",
            "http://user@127.0.0.1:{port}/SimpleNotificationService-test.pem",
        ],
        ids=["lookalike-host", "other-host", "query", "userinfo"],
    )
    async def test_a_certificate_url_not_matching_the_pattern_is_403(
        self, app: FastAPI, alice: Caller, storage: LocalStorage, sns: FakeSns, cert_url: str
    ) -> None:
        ticket = await pending_with_bytes(alice)
        message = sns.sign(sns.notification(s3_event(storage.bucket, ticket["key"])))
        message["SigningCertURL"] = cert_url.format(port=sns.base_url.rsplit(":", 1)[1])
        error = error_of(await post_sns(alice.http, message), 403)
        assert error["code"] == "sns_signature_invalid"
        assert "SigningCertURL" in error["message"]
        assert sns.seen == []
        await assert_pending(app, alice, ticket)

    async def test_a_certificate_that_cannot_be_fetched_now_is_503(
        self, app: FastAPI, alice: Caller, storage: LocalStorage, sns: FakeSns
    ) -> None:
        ticket = await pending_with_bytes(alice)
        message = sns.sign(sns.notification(s3_event(storage.bucket, ticket["key"])))
        message["SigningCertURL"] = f"http://127.0.0.1:{free_port()}/nobody-listens.pem"
        error = error_of(await post_sns(alice.http, message), 503)
        assert error["code"] == "sns_certificate_unavailable"
        await assert_pending(app, alice, ticket)

    async def test_a_certificate_over_the_size_cap_is_403(
        self, alice: Caller, storage: LocalStorage, sns: FakeSns
    ) -> None:
        message = sns.sign(sns.notification(s3_event(storage.bucket, "k")))
        message["SigningCertURL"] = f"{sns.base_url}/huge.pem"
        error = error_of(await post_sns(alice.http, message), 403)
        assert error["code"] == "sns_signature_invalid"
        assert error["message"] == "the signing certificate is too large"

    async def test_a_certificate_no_longer_valid_is_403(
        self, app: FastAPI, alice: Caller, storage: LocalStorage, sns: FakeSns
    ) -> None:
        ticket = await pending_with_bytes(alice)
        message = sns.sign(sns.notification(s3_event(storage.bucket, ticket["key"])))
        later = datetime.now(UTC) + timedelta(days=3)  # the certificate ends in one day
        clock.set_clock(lambda: later)
        try:
            error = error_of(await post_sns(alice.http, message), 403)
        finally:
            clock.set_clock(None)
        assert error["code"] == "sns_signature_invalid"
        assert error["message"] == "the signing certificate is not valid now"
        await assert_pending(app, alice, ticket)

    @pytest.mark.parametrize("header", [True, False], ids=["with-header", "without-header"])
    @pytest.mark.parametrize(
        "drop", ["Signature", "SigningCertURL", "SignatureVersion", "MessageId", "Timestamp"]
    )
    async def test_an_unsigned_message_is_403_even_with_the_webhook_token(
        self,
        app: FastAPI,
        alice: Caller,
        storage: LocalStorage,
        sns: FakeSns,
        header: bool,
        drop: str,
    ) -> None:
        ticket = await pending_with_bytes(alice)
        message = sns.sign(sns.notification(s3_event(storage.bucket, ticket["key"])))
        del message[drop]
        response = await post_sns(alice.http, message, header=header, Authorization=TOKEN)
        error = error_of(response, 403)
        assert error["code"] == "sns_signature_invalid"
        assert drop in error["message"]
        await assert_pending(app, alice, ticket)

    async def test_an_unknown_signature_version_is_403(
        self, alice: Caller, storage: LocalStorage, sns: FakeSns
    ) -> None:
        message = sns.sign(sns.notification(s3_event(storage.bucket, "k")))
        message["SignatureVersion"] = "3"
        assert error_of(await post_sns(alice.http, message), 403)["code"] == (
            "sns_signature_invalid"
        )

    @pytest.mark.parametrize(
        ("body", "headers"),
        [
            (b"{not json", {"x-amz-sns-message-type": "Notification"}),
            (b'{"Type": "Notification", "TopicArn": "x"}', {"x-amz-sns-message-type": "Other"}),
            (b'{"Type": "Surprise"}', {"x-amz-sns-message-type": "Surprise"}),
        ],
        ids=["not-json", "header-differs", "unknown-type"],
    )
    async def test_a_body_that_is_not_an_sns_message_is_400(
        self, alice: Caller, body: bytes, headers: dict[str, str]
    ) -> None:
        response = await alice.http.post(URL, content=body, headers=headers)
        assert error_of(response, 400)["code"] == "invalid_event"

    async def test_a_signed_notification_that_is_not_an_s3_event_is_400(
        self, alice: Caller, sns: FakeSns
    ) -> None:
        message = sns.sign(sns.notification("hello, subscribers"))
        error = error_of(await post_sns(alice.http, message), 400)
        assert error["code"] == "invalid_event"


class TestNoTopicConfigured:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"sns_cert_url_pattern": LOOPBACK_CERT_PATTERN}

    @pytest.fixture
    def database_url(self, sqlite_url: str) -> str:
        return sqlite_url

    async def test_every_sns_message_is_refused(
        self, app: FastAPI, alice: Caller, storage: LocalStorage, sns: FakeSns
    ) -> None:
        ticket = await pending_with_bytes(alice)
        for message in (
            sns.sign(sns.confirmation()),
            sns.sign(sns.notification(s3_event(storage.bucket, ticket["key"]))),
        ):
            error = error_of(await post_sns(alice.http, message), 403)
            assert error["code"] == "sns_topic_not_allowed"
            assert "BIGUPLOAD_SNS_TOPIC_ARNS" in error["message"]
        assert sns.seen == []
        await assert_pending(app, alice, ticket)
