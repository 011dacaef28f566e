"""Files reaching a status, and the bytes confirmed, counted when their transaction commits
(a change rolled back is not counted; one committed is counted once, by the process that
made it)."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bigupload.metrics.catalog import BYTES_CONFIRMED, FILES, failure_class

_PENDING = "bigupload.metrics.files"  # session.info: [(status, reason class, bytes), ...]


def reached(
    session: AsyncSession | Session,
    status: str,
    *,
    reason: str | None = None,
    failure: str | None = None,
    size: int | None = None,
) -> None:
    """Count a file reaching ``status`` once ``session`` commits; a failure's class is
    ``failure``, or taken from the reason's prefix (``checksum_mismatch: ...``)."""
    label = (failure or failure_class(reason)) if status == "failed" else ""
    session.info.setdefault(_PENDING, []).append((status, label, size or 0))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for status, label, size in session.info.pop(_PENDING, ()):
        FILES.labels(status, label).inc()
        if size:
            BYTES_CONFIRMED.inc(size)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
