"""Durable background jobs, and named leases that let one process at a time do periodic work."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from bigupload.db import Base, BigIntPK, UTCDateTime


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting for run_at, or for a worker
    RUNNING = "running"  # claimed; another worker may take it over once locked_until passes
    DONE = "done"
    DEAD = "dead"  # gave up: out of attempts, or failed for good


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_due", "status", "run_at"),
        Index("ix_jobs_ordering", "ordering_key", "id"),
        #: Retention deletes the jobs that finished longest ago first.
        Index("ix_jobs_finished", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    file_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None, index=True)
    #: The owner of the file the job is about, so a user can list their own deliveries.
    owner: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    #: At most one job per key: enqueueing a second is a no-op.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), default=None, unique=True)
    #: Jobs sharing a key run one at a time, in id order (e.g. one webhook endpoint and file).
    ordering_key: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64), default=None)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    #: What the last attempt produced (a webhook's HTTP status and response, for instance).
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Lease(Base):
    """A named lock with an end: whoever holds it until ``until`` does the named work."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime] = mapped_column(UTCDateTime)
