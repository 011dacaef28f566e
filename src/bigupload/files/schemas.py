"""What the file API answers, and what it accepts to change a file's status."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bigupload.files.models import FileRecord
from bigupload.files.status import FileStatus


class FileOut(BaseModel):
    """A file as the registry knows it."""

    id: uuid.UUID
    owner: str
    bucket: str
    key: str
    filename: str
    content_type: str = Field(description="The content type the uploader declared.")
    detected_content_type: str | None = Field(
        description="The content type found in the stored bytes, once processed."
    )
    size: int | None = Field(description="The size the uploader declared, in bytes.")
    stored_size: int | None = Field(description="The size the store reports, once uploaded.")
    checksum_sha256: str | None = Field(
        description="Hex SHA-256: declared by the uploader, else computed by processing."
    )
    etag: str | None
    status: FileStatus
    metadata: dict[str, Any]
    error: str | None = Field(description="Why the file failed, when it did.")
    created_at: datetime
    updated_at: datetime
    uploaded_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime | None
    confirmed_at: datetime | None = Field(
        default=None,
        description="When the application confirmed it keeps the file (`POST .../confirm`).",
    )
    results: dict[str, Any] = Field(
        default_factory=dict,
        description="What processing found (`detected`) and what each processing step "
        "returned, by step name.",
    )

    @classmethod
    def of(cls, record: FileRecord) -> FileOut:
        return cls(
            id=record.id,
            owner=record.owner,
            bucket=record.bucket,
            key=record.key,
            filename=record.filename,
            content_type=record.content_type,
            detected_content_type=record.detected_content_type,
            size=record.size,
            stored_size=record.stored_size,
            checksum_sha256=record.checksum_sha256,
            etag=record.etag,
            status=FileStatus(record.status),
            metadata=record.user_metadata or {},
            error=record.error,
            created_at=record.created_at,
            updated_at=record.updated_at,
            uploaded_at=record.uploaded_at,
            completed_at=record.completed_at,
            expires_at=record.expires_at,
            confirmed_at=record.confirmed_at,
            results=record.results or {},
        )


#: The name the notification documents and processing steps know a file's description by.
FileInfo = FileOut


class FilePage(BaseModel):
    items: list[FileOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["processing", "completed", "failed"]
    reason: str | None = Field(default=None, max_length=2000)


class DownloadLink(BaseModel):
    method: Literal["GET"] = "GET"
    url: str
    filename: str
    expires_at: datetime
