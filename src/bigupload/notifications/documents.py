"""The notification document: what webhooks POST, e-mails describe, SNS publishes and SSE sends.

One shape for every sink, built from one status event and the file as it is when the event is
dispatched::

    {"type": "file.completed",
     "timestamp": "2026-01-31T12:00:00Z",
     "data": {"event_id": 42, "file_id": "...", "owner": "alice",
              "from_status": "processing", "to_status": "completed", "reason": null,
              "file": {...} or null}}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.schemas import FileInfo


def event_type(to_status: str) -> str:
    """``file.<status>``: ``file.completed``, ``file.deleted``, ..."""
    return f"file.{to_status}"


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as the API's own datetimes are written."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_document(event: FileEvent, record: FileRecord | None) -> dict[str, Any]:
    """The document for ``event``; ``record`` is the file now, or ``None`` if it is gone."""
    return {
        "type": event_type(event.to_status),
        "timestamp": iso_utc(event.created_at),
        "data": {
            "event_id": event.id,
            "file_id": str(event.file_id),
            "owner": event.owner,
            "from_status": event.from_status,
            "to_status": event.to_status,
            "reason": event.reason,
            "file": FileInfo.of(record).model_dump(mode="json") if record is not None else None,
        },
    }
