"""Turn what a store sends about its objects into :class:`ObjectEvent` values.

Accepted shapes, each a JSON object:

- an S3 event notification, ``{"Records": [...]}``, as AWS S3, moto and LocalStack send it;
- MinIO's webhook body: the same ``Records`` plus top-level ``EventName`` and ``Key`` (ignored);
- an SNS envelope (``"Type": "Notification"``) whose ``Message`` is one of the above as a JSON
  string, as an SNS HTTP subscription posts it and as SNS delivers it to SQS without raw delivery;
- S3's ``s3:TestEvent`` (sent when notifications are configured): no events.

Only records whose ``eventName`` starts with ``ObjectCreated`` or ``ObjectRemoved`` (MinIO
prefixes ``s3:``) become events; any other record is skipped. Keys arrive URL-encoded as S3
encodes them in events (``a b/c`` as ``a+b%2Fc``) and are decoded with ``unquote_plus``.
Anything else raises :class:`InvalidEvent`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from bigupload.text import find_surrogate

CREATED = "ObjectCreated"
REMOVED = "ObjectRemoved"
#: SNS message types (the ``Type`` field and the ``x-amz-sns-message-type`` header).
SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})
#: Records in one delivery, at most (S3 sends one per notification; the body is capped anyway).
MAX_RECORDS = 1000


class InvalidEvent(ValueError):
    """Not a storage event notification bigupload understands; the message says why."""


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One object created in or removed from the store, as the store reported it.

    Only ``bucket``, ``key`` and ``event_name`` are acted on: the store is asked again about
    the object before anything changes, so a stale, repeated or reordered event is harmless.
    """

    bucket: str
    key: str
    event_name: str  # "ObjectCreated:Put", "ObjectRemoved:Delete", ... (no "s3:" prefix)
    size: int | None = None
    etag: str | None = None  # unquoted, as S3 reports it in events
    sequencer: str | None = None
    event_time: datetime | None = None

    @property
    def created(self) -> bool:
        return self.event_name.startswith(CREATED)

    @property
    def removed(self) -> bool:
        return self.event_name.startswith(REMOVED)


def parse_body(raw: bytes | str) -> list[ObjectEvent]:
    """The events in a request or queue message body (any accepted shape)."""
    return parse_document(load_json(raw))


def load_json(raw: bytes | str) -> dict[str, Any]:
    """``raw`` as a JSON object, or :class:`InvalidEvent`."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidEvent("the body is not a JSON object")
    found = find_surrogate(document)
    if found is not None:
        where = ".".join(str(part) for part in found)
        raise InvalidEvent(f"{where} is not valid Unicode text (a lone surrogate code point)")
    return document


def is_sns_message(document: Mapping[str, Any]) -> bool:
    """Whether ``document`` claims to be an SNS message (which must then be verified)."""
    return document.get("Type") in SNS_TYPES and "TopicArn" in document


def parse_document(document: Mapping[str, Any], *, _nested: bool = False) -> list[ObjectEvent]:
    """The events in a decoded body: S3/MinIO records, an SNS envelope, or a test event."""
    if "Records" in document:
        return parse_records(document["Records"])
    if document.get("Event") == "s3:TestEvent":
        return []
    if document.get("Type") == "Notification":
        if _nested:
            raise InvalidEvent("an SNS Notification inside another is not a storage event")
        message = document.get("Message")
        if not isinstance(message, str):
            raise InvalidEvent("the SNS notification has no Message string")
        return parse_document(load_json(message), _nested=True)
    if document.get("Type") in SNS_TYPES:
        raise InvalidEvent(f"an SNS {document['Type']} carries no storage event")
    raise InvalidEvent(
        "not an S3 event notification: expected an object with 'Records' (S3, MinIO), "
        "an SNS Notification whose Message holds one, or an s3:TestEvent"
    )


def parse_records(records: object) -> list[ObjectEvent]:
    """The object events among S3 event records; other kinds of records are skipped."""
    if not isinstance(records, list):
        raise InvalidEvent("'Records' must be a list")
    if len(records) > MAX_RECORDS:
        raise InvalidEvent(f"at most {MAX_RECORDS} records are accepted in one delivery")
    events = []
    for index, record in enumerate(records):
        event = _record(record, index)
        if event is not None:
            events.append(event)
    return events


def _record(record: object, index: int) -> ObjectEvent | None:
    where = f"Records[{index}]"
    if not isinstance(record, dict):
        raise InvalidEvent(f"{where} is not an object")
    name = record.get("eventName")
    if not isinstance(name, str):
        raise InvalidEvent(f"{where}.eventName is missing")
    name = name.removeprefix("s3:")
    if not name.startswith((CREATED, REMOVED)):
        return None
    s3 = _object(record.get("s3"), f"{where}.s3")
    bucket = _object(s3.get("bucket"), f"{where}.s3.bucket").get("name")
    target = _object(s3.get("object"), f"{where}.s3.object")
    key = target.get("key")
    if not isinstance(bucket, str) or not bucket:
        raise InvalidEvent(f"{where}.s3.bucket.name is missing")
    if not isinstance(key, str) or not key:
        raise InvalidEvent(f"{where}.s3.object.key is missing")
    size = target.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise InvalidEvent(f"{where}.s3.object.size is not a size")
    return ObjectEvent(
        bucket=bucket,
        key=unquote_plus(key),
        event_name=name,
        size=size,
        etag=_text(target.get("eTag")),
        sequencer=_text(target.get("sequencer")),
        event_time=_time(record.get("eventTime")),
    )


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidEvent(f"{where} is missing")
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None  # informative only: never a reason to refuse the event
