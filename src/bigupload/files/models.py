"""File records and their append-only status events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, String, Text, Uuid, false, text
from sqlalchemy.orm import Mapped, mapped_column

from bigupload.db import Base, BigIntPK, UTCDateTime
from bigupload.files.status import FileStatus

#: The rows of ``ix_files_unconfirmed``.
UNCONFIRMED = "confirmed_at IS NULL AND uploaded_at IS NOT NULL"


class FileRecord(Base):
    __tablename__ = "files"
    # Every list of ``GET /files`` is one owner's, newest first: each filter has an index that
    # holds the owner, then the filtered columns, then the order, so that a page is a range of
    # the index read from its end, never a scan or a sort (``repository.list_owned``).
    __table_args__ = (
        Index("ix_files_owner_created", "owner", "created_at", "id"),
        Index("ix_files_owner_status_created", "owner", "status", "created_at", "id"),
        Index("ix_files_owner_type_created", "owner", "content_type", "created_at", "id"),
        Index(
            "ix_files_owner_status_type_created",
            "owner",
            "status",
            "content_type",
            "created_at",
            "id",
        ),
        # The sweeper's "pending since before X", oldest first.
        Index("ix_files_status_created", "status", "created_at", "id"),
        # The sweeper's "uploaded before X and never confirmed", a status at a time, oldest
        # first: only the files uploaded and not confirmed (a create, a pending file, is not in
        # it), so confirmed files, however many, are never read.
        Index(
            "ix_files_unconfirmed",
            "status",
            "created_at",
            "id",
            "uploaded_at",
            sqlite_where=text(UNCONFIRMED),
            postgresql_where=text(UNCONFIRMED),
        ),
        Index("ux_files_owner_idempotency_key", "owner", "idempotency_key", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(1024), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    detected_content_type: Mapped[str | None] = mapped_column(String(255), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger)
    stored_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    checksum_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    etag: Mapped[str | None] = mapped_column(String(128), default=None)
    status: Mapped[str] = mapped_column(String(16), default=FileStatus.PENDING)
    multipart_upload_id: Mapped[str | None] = mapped_column(String(1024), default=None)
    part_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    part_checksums: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    user_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    #: What processing found and what each configured step returned, by step name.
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    #: The client's ``Idempotency-Key`` of the create that made this file, if it sent one.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)


class FileEvent(Base):
    """One status change. Rows are only ever appended; they outlive the file they describe."""

    __tablename__ = "file_events"
    # A subscriber's events in order (the stream's resume): ``owner, id``.
    __table_args__ = (Index("ix_file_events_owner_id", "owner", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    file_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    owner: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Set once the notification jobs (webhooks, e-mail, SNS) for this event were queued.
    dispatched: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), index=True
    )
