"""What counts as a storage event, in every shape a store sends it (no app, no store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bigupload.storage_events.parse import InvalidEvent, ObjectEvent, parse_body, parse_document
from tests.storage_events.helpers import TOPIC, minio_body, s3_record

KEY = "uploads/alice/2026/01/a b+c%d"


def test_an_s3_record_becomes_an_event_with_its_key_decoded() -> None:
    record = s3_record("bucket-a", KEY, size=7, etag="abc", sequencer="0A1B")
    assert record["s3"]["object"]["key"] == "uploads%2Falice%2F2026%2F01%2Fa+b%2Bc%25d"
    (event,) = parse_body(json.dumps({"Records": [record]}))
    assert event == ObjectEvent(
        bucket="bucket-a",
        key=KEY,
        event_name="ObjectCreated:Put",
        size=7,
        etag="abc",
        sequencer="0A1B",
        event_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert event.created and not event.removed


def test_minio_names_events_with_the_s3_prefix() -> None:
    (event,) = parse_document(minio_body("bucket-a", KEY, "s3:ObjectRemoved:Delete"))
    assert event.event_name == "ObjectRemoved:Delete"
    assert event.removed and not event.created
    assert event.key == KEY


def test_an_sns_envelope_is_opened_once() -> None:
    inner = json.dumps({"Records": [s3_record("bucket-a", KEY)]})
    envelope = {"Type": "Notification", "TopicArn": TOPIC, "Message": inner}
    (event,) = parse_document(envelope)
    assert event.key == KEY
    nested = {"Type": "Notification", "TopicArn": TOPIC, "Message": json.dumps(envelope)}
    with pytest.raises(InvalidEvent, match="inside another"):
        parse_document(nested)


def test_test_events_and_other_records_are_no_events() -> None:
    assert parse_document({"Service": "Amazon S3", "Event": "s3:TestEvent"}) == []
    records = [
        s3_record("b", "k", "ObjectTagging:Put"),
        s3_record("b", "k", "ObjectRestore:Completed"),
        {"eventName": "s3:Replication:OperationFailedReplication"},
    ]
    assert parse_document({"Records": records}) == []


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"Type": "SubscriptionConfirmation", "TopicArn": TOPIC}, "carries no storage event"),
        ({"Type": "Notification", "TopicArn": TOPIC, "Message": 3}, "no Message string"),
        ({"Records": [{"eventName": "ObjectCreated:Put", "s3": {}}]}, "s3.bucket is missing"),
        (
            {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]},
            "s3.object is missing",
        ),
        ({"Records": [{"s3": {}}]}, "eventName is missing"),
        ({"Records": ["x"]}, "Records[0] is not an object"),
        ({"Records": [{}] * 1001}, "at most 1000 records"),
    ],
)
def test_malformed_documents_say_what_is_wrong(document: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidEvent) as raised:
        parse_document(document)
    assert says in str(raised.value)


def test_an_unreadable_event_time_is_no_reason_to_refuse() -> None:
    record = s3_record("b", "k")
    record["eventTime"] = "yesterday"
    (event,) = parse_document({"Records": [record]})
    assert event.event_time is None
