"""``POST /storage-events``: S3 event notifications from MinIO's webhook target and AWS SNS."""

from __future__ import annotations

import hmac
import logging
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from bigupload.config import Settings
from bigupload.dependencies import SettingsDep, StorageDep
from bigupload.errors import AppError, ErrorBody, Unauthenticated
from bigupload.json_body import ApiRoute
from bigupload.storage.base import Storage
from bigupload.storage_events.handler import EventReport, handle_events
from bigupload.storage_events.parse import (
    SNS_TYPES,
    InvalidEvent,
    ObjectEvent,
    is_sns_message,
    load_json,
    parse_document,
)
from bigupload.storage_events.sns import SnsVerifier

router = APIRouter(tags=["storage events"], route_class=ApiRoute)
log = logging.getLogger("bigupload.storage_events")

SNS_TYPE_HEADER = "x-amz-sns-message-type"


class StorageEventsResult(BaseModel):
    """What one delivery did: each object event is counted under exactly one outcome."""

    events: int = Field(description="ObjectCreated and ObjectRemoved events in the delivery.")
    confirmed: int = Field(description="Pending files now `uploaded`.")
    failed: int = Field(description="Pending files whose stored object differs: now `failed`.")
    duplicate: int = Field(description="Files already past `pending`: nothing to do.")
    late: int = Field(description="Files expired or aborted before the bytes landed: deleted.")
    unconfirmed: int = Field(description="Pending files with no complete object yet: unchanged.")
    unknown: int = Field(description="Keys or buckets bigupload does not know: ignored.")
    removed: int = Field(description="ObjectRemoved events for known files (logged).")
    missing: int = Field(description="Of those, readable files whose object is gone.")
    subscription: Literal["confirmed", "unsubscribed"] | None = Field(
        default=None, description="For an SNS SubscriptionConfirmation or UnsubscribeConfirmation."
    )

    @classmethod
    def of(
        cls, events: list[ObjectEvent], report: EventReport, **extra: Any
    ) -> StorageEventsResult:
        return cls(events=len(events), **report.counts(), **extra)


def _verifier(request: Request, settings: Settings) -> SnsVerifier:
    verifier: SnsVerifier | None = getattr(request.app.state, "sns_verifier", None)
    if verifier is None:
        verifier = request.app.state.sns_verifier = SnsVerifier(settings)
    return verifier


def _check_token(request: Request, settings: Settings) -> None:
    """The ``Authorization`` header is the token, or ``Bearer <token>``."""
    token = settings.storage_events_token
    if not token:
        raise Unauthenticated(
            "storage event webhooks are disabled: set BIGUPLOAD_STORAGE_EVENTS_TOKEN and send "
            "it in the Authorization header (AWS SNS messages are accepted without it)",
            code="storage_events_disabled",
        )
    given = request.headers.get("authorization", "").strip()
    scheme, _, rest = given.partition(" ")
    expected = token.encode()
    plain = hmac.compare_digest(given.encode(), expected)
    bearer = hmac.compare_digest(rest.strip().encode(), expected)
    if not (plain or (bearer and scheme.lower() == "bearer")):
        raise Unauthenticated(
            "the storage events token is missing or wrong",
            code="invalid_storage_events_token",
        )


def _invalid(exc: InvalidEvent) -> AppError:
    return AppError(str(exc), code="invalid_event", status=400)


@router.post(
    "/storage-events",
    response_model=StorageEventsResult,
    summary="Receive S3 event notifications (MinIO webhook, AWS SNS HTTP subscription)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": 'An S3 event notification ({"Records": [...]}), '
                        "MinIO's webhook body, or an SNS message.",
                    }
                }
            },
        }
    },
    responses={
        400: {"model": ErrorBody, "description": "`invalid_event`: not an event notification."},
        401: {
            "model": ErrorBody,
            "description": "`storage_events_disabled` (no token configured) or "
            "`invalid_storage_events_token`.",
        },
        403: {
            "model": ErrorBody,
            "description": "`sns_signature_invalid` or `sns_topic_not_allowed`.",
        },
        502: {
            "model": ErrorBody,
            "description": "`sns_confirmation_failed`, or `storage_error`.",
        },
        503: {
            "model": ErrorBody,
            "description": "`storage_unavailable` or `sns_certificate_unavailable`: retry.",
        },
    },
)
async def storage_events(
    request: Request, settings: SettingsDep, storage: StorageDep
) -> StorageEventsResult:
    """Learn from the store that objects were created or removed; needs no API key.

    **AWS SNS** (an HTTP(S) subscription of a topic the bucket notifies): any message with the
    `x-amz-sns-message-type` header, or whose body is an SNS message, must carry a valid SNS
    signature from a topic in `BIGUPLOAD_SNS_TOPIC_ARNS`. A `SubscriptionConfirmation` is
    verified, then confirmed by visiting its `SubscribeURL`; an `UnsubscribeConfirmation` is
    verified and logged (never resubscribed); a `Notification` carries the S3 event.

    **MinIO's webhook target** (or any sender of S3 event JSON): `Authorization` must be the
    configured `BIGUPLOAD_STORAGE_EVENTS_TOKEN`, as is or as `Bearer <token>`.

    Each `ObjectCreated` event confirms its pending file as `POST /uploads/{id}/complete` does,
    after asking the store again (the event itself is never trusted): repeated, late or
    reordered events change nothing more; events for unknown keys are ignored.

    Error codes: `invalid_event` (400: the body is not JSON, or not an event notification),
    `storage_events_disabled` (401: no token is configured for webhook deliveries),
    `invalid_storage_events_token` (401: the token is missing or wrong),
    `sns_signature_invalid` (403: unsigned, tampered, a signing certificate not from SNS, or
    fields missing), `sns_topic_not_allowed` (403: the topic is not configured; with no topic
    configured every SNS message gets it), `sns_certificate_unavailable` (503: the signing
    certificate could not be fetched now), `sns_confirmation_failed` (502),
    `storage_unavailable` (503: the store is unreachable; nothing changed, send it again),
    `storage_error` (502).
    """
    raw = await request.body()
    sns_type = request.headers.get(SNS_TYPE_HEADER)
    document: dict[str, Any] | None = None
    invalid: InvalidEvent | None = None
    try:
        document = load_json(raw)
    except InvalidEvent as exc:
        invalid = exc
    if sns_type is not None or (document is not None and is_sns_message(document)):
        if document is None:
            raise _invalid(invalid or InvalidEvent("the body is not JSON"))
        return await _sns(request, settings, storage, document, sns_type)

    _check_token(request, settings)  # before saying anything about the body
    if document is None:
        raise _invalid(invalid or InvalidEvent("the body is not JSON"))
    try:
        events = parse_document(document)
    except InvalidEvent as exc:
        raise _invalid(exc) from None
    report = await handle_events(
        events,
        sessionmaker=request.app.state.sessionmaker,
        storage=storage,
        settings=settings,
        source="webhook",
    )
    return StorageEventsResult.of(events, report)


async def _sns(
    request: Request,
    settings: Settings,
    storage: Storage,
    document: dict[str, Any],
    header: str | None,
) -> StorageEventsResult:
    kind = document.get("Type")
    if kind not in SNS_TYPES:
        raise AppError(
            f"{kind!r} is not an SNS message type ({', '.join(sorted(SNS_TYPES))})",
            code="invalid_event",
            status=400,
        )
    if header is not None and header != kind:
        raise AppError(
            f"the {SNS_TYPE_HEADER} header says {header!r}, the message's Type is {kind!r}",
            code="invalid_event",
            status=400,
        )
    verifier = _verifier(request, settings)
    try:
        message = await verifier.verify(document)
    except AppError as exc:
        log.warning(
            "refused an SNS %s from topic %r: %s (%s)",
            kind,
            document.get("TopicArn"),
            exc.message,
            exc.code,
        )
        raise
    if kind == "SubscriptionConfirmation":
        await verifier.confirm_subscription(message)
        return StorageEventsResult.of([], EventReport(), subscription="confirmed")
    if kind == "UnsubscribeConfirmation":
        log.warning(
            "SNS says this endpoint was unsubscribed from topic %s; not resubscribing",
            message["TopicArn"],
        )
        return StorageEventsResult.of([], EventReport(), subscription="unsubscribed")
    try:
        events = parse_document(message)
    except InvalidEvent as exc:
        raise _invalid(exc) from None
    report = await handle_events(
        events,
        sessionmaker=request.app.state.sessionmaker,
        storage=storage,
        settings=settings,
        source="sns",
    )
    return StorageEventsResult.of(events, report)
