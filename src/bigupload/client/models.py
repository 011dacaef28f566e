"""What the client answers (files, pages, links) and the API's tickets it reads.

Plain dataclasses read from the API's JSON: the client never imports the server's models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: States in which a file's bytes are whole and may be downloaded.
READABLE = frozenset({"uploaded", "processing", "completed"})
#: States from which an upload can never finish: a new upload must begin.
FINISHED_UNREADABLE = frozenset({"failed", "expired", "aborted"})


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file as the server's registry knows it."""

    id: str
    filename: str
    status: str
    content_type: str
    size: int | None
    stored_size: int | None
    checksum_sha256: str | None
    owner: str = ""
    bucket: str = ""
    key: str = ""
    detected_content_type: str | None = None
    etag: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    uploaded_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None

    @property
    def readable(self) -> bool:
        """Whether the bytes are whole and may be downloaded."""
        return self.status in READABLE

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteFile:
        metadata = data.get("metadata")
        return cls(
            id=str(data["id"]),
            filename=str(data.get("filename", "")),
            status=str(data.get("status", "")),
            content_type=str(data.get("content_type", "")),
            size=_int(data.get("size")),
            stored_size=_int(data.get("stored_size")),
            checksum_sha256=data.get("checksum_sha256") or None,
            owner=str(data.get("owner", "")),
            bucket=str(data.get("bucket", "")),
            key=str(data.get("key", "")),
            detected_content_type=data.get("detected_content_type") or None,
            etag=data.get("etag") or None,
            metadata=metadata if isinstance(metadata, dict) else {},
            error=data.get("error") or None,
            created_at=_time(data.get("created_at")),
            updated_at=_time(data.get("updated_at")),
            uploaded_at=_time(data.get("uploaded_at")),
            completed_at=_time(data.get("completed_at")),
            expires_at=_time(data.get("expires_at")),
        )

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready values (times in ISO 8601)."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True, slots=True)
class FilePage:
    """One page of files, newest first; ``next_cursor`` is ``None`` on the last page."""

    items: list[RemoteFile]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FilePage:
        return cls(
            items=[RemoteFile.from_json(item) for item in data.get("items", [])],
            next_cursor=data.get("next_cursor") or None,
        )


@dataclass(frozen=True, slots=True)
class DownloadLink:
    url: str
    filename: str
    expires_at: datetime | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DownloadLink:
        return cls(
            url=str(data["url"]),
            filename=str(data.get("filename", "")),
            expires_at=_time(data.get("expires_at")),
        )


# -- the API's tickets (internal) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SingleTicket:
    """Send the whole file with one PUT to ``url``, with exactly ``headers``."""

    id: str
    url: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class MultipartTicket:
    id: str
    upload_id: str
    part_size: int
    part_count: int
    part_checksums: bool


def ticket_from_json(data: dict[str, Any]) -> SingleTicket | MultipartTicket:
    if data.get("method") == "multipart":
        return MultipartTicket(
            id=str(data["id"]),
            upload_id=str(data["upload_id"]),
            part_size=int(data["part_size"]),
            part_count=int(data["part_count"]),
            part_checksums=bool(data.get("part_checksums", False)),
        )
    return SingleTicket(
        id=str(data["id"]), url=str(data["url"]), headers=dict(data.get("headers") or {})
    )


@dataclass(frozen=True, slots=True)
class SignedPart:
    """Where to PUT one part: exactly ``size`` bytes with exactly ``headers``."""

    part_number: int
    size: int
    url: str
    headers: dict[str, str]
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredPart:
    """A part the store already holds."""

    part_number: int
    size: int
    etag: str
    checksum_sha256: str | None  # hex


def signed_parts_from_json(data: dict[str, Any]) -> list[SignedPart]:
    return [
        SignedPart(
            part_number=int(part["part_number"]),
            size=int(part["size"]),
            url=str(part["url"]),
            headers=dict(part.get("headers") or {}),
            expires_at=_time(part.get("expires_at")),
        )
        for part in data.get("parts", [])
    ]


def stored_parts_from_json(data: dict[str, Any]) -> list[StoredPart]:
    return [
        StoredPart(
            part_number=int(part["part_number"]),
            size=int(part["size"]),
            etag=str(part.get("etag") or ""),
            checksum_sha256=(part.get("checksum_sha256") or None),
        )
        for part in data.get("parts", [])
    ]
