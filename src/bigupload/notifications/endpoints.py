"""``/api/v1/webhooks/deliveries``: the webhook delivery log of the caller's files, and replay.

A caller sees the deliveries of events about their own files, never another owner's: another
owner's delivery answers 404 exactly as a missing one does.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload.auth.dependencies import PrincipalDep
from bigupload.dependencies import SessionDep, SettingsDep
from bigupload.errors import Conflict, ErrorBody, InvalidRequest, NotFound
from bigupload.jobs.models import Job, JobStatus
from bigupload.json_body import ApiRoute
from bigupload.notifications import webhooks
from bigupload.notifications.delivery_status import DeliveryStatus

router = APIRouter(prefix="/webhooks/deliveries", tags=["webhooks"], route_class=ApiRoute)

_MAX_ID = 2**63 - 1
DeliveryId = Annotated[int, Path(ge=1, le=_MAX_ID, description="The delivery's id.")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such delivery of yours."}
}


class DeliveryOut(BaseModel):
    """One webhook delivery: one event sent (or being sent) to one endpoint."""

    id: int
    webhook_id: str | None = Field(
        description="The `webhook-id` header: the same on every retry and replay of one event."
    )
    endpoint: str | None
    event_type: str | None = Field(examples=["file.completed"])
    file_id: uuid.UUID | None
    status: DeliveryStatus = Field(
        description="`pending` (queued or being sent), `delivered` (a 2xx came back) or "
        "`failed` (gave up)."
    )
    attempts: int
    max_attempts: int
    last_status_code: int | None = Field(
        description="The HTTP status of the last attempt; null if none answered."
    )
    last_error: str | None = Field(description="Why the last failed attempt failed.")
    next_attempt_at: datetime | None = Field(description="When a pending delivery is next tried.")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> DeliveryOut:
        return cls(**_fields(job))


class DeliveryDetail(DeliveryOut):
    document: dict[str, Any] | None = Field(description="The JSON body that is signed and sent.")
    last_response: str | None = Field(description="The first KiB of the last answer's body.")
    last_duration_ms: float | None

    @classmethod
    def of(cls, job: Job) -> DeliveryDetail:
        result = job.result or {}
        document = job.payload.get("document")
        return cls(
            **_fields(job),
            document=document if isinstance(document, dict) else None,
            last_response=_str_or_none(result.get("response")),
            last_duration_ms=_number_or_none(result.get("duration_ms")),
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fields(job: Job) -> dict[str, Any]:
    payload = job.payload or {}
    document = payload.get("document")
    status_code = (job.result or {}).get("status_code")
    return {
        "id": job.id,
        "webhook_id": _str_or_none(payload.get("webhook_id")),
        "endpoint": _str_or_none(payload.get("endpoint")),
        "event_type": _str_or_none(document.get("type")) if isinstance(document, dict) else None,
        "file_id": job.file_id,
        "status": webhooks.delivery_status(job),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_status_code": status_code if isinstance(status_code, int) else None,
        "last_error": job.last_error,
        "next_attempt_at": job.run_at if job.status == JobStatus.QUEUED else None,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "finished_at": job.finished_at,
    }


async def _owned(session: AsyncSession, delivery_id: int, owner: str) -> Job:
    job = await webhooks.get_delivery(session, delivery_id, owner)
    if job is None:
        raise NotFound("no such delivery", code="delivery_not_found")
    return job


@router.get("", response_model=DeliveryPage, summary="Your webhook deliveries, newest first")
async def list_deliveries(
    principal: PrincipalDep,
    session: SessionDep,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    file_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryPage:
    try:
        rows, next_cursor = await webhooks.list_deliveries(
            session,
            owner=principal.owner,
            limit=limit,
            status=status_,
            file_id=file_id,
            cursor=cursor,
        )
    except webhooks.InvalidCursor:
        raise InvalidRequest("the cursor is not one this API made", code="invalid_cursor") from None
    return DeliveryPage(items=[DeliveryOut.of(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{delivery_id}",
    response_model=DeliveryDetail,
    summary="One delivery, with the document it sends",
    responses=_NOT_FOUND,
)
async def get_delivery(
    delivery_id: DeliveryId, principal: PrincipalDep, session: SessionDep
) -> DeliveryDetail:
    return DeliveryDetail.of(await _owned(session, delivery_id, principal.owner))


@router.post(
    "/{delivery_id}/replay",
    response_model=DeliveryOut,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a delivery again (same document, same webhook-id)",
    responses={
        **_NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "`delivery_pending`: it is still being tried; "
            "`endpoint_not_configured`: its endpoint was removed from the configuration.",
        },
    },
)
async def replay_delivery(
    delivery_id: DeliveryId, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> DeliveryOut:
    job = await _owned(session, delivery_id, principal.owner)
    try:
        replayed = await webhooks.replay(session, job, settings)
    except webhooks.ReplayRefused as exc:
        raise Conflict(exc.message, code=exc.code) from None
    return DeliveryOut.of(replayed)
