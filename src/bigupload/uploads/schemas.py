"""What ``POST /uploads`` accepts, with every validation rule, and the ticket it answers."""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
)

from bigupload.files.schemas import FileOut
from bigupload.files.status import FileStatus

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"  # noqa: S105  (an RFC 9110 token, not a secret)
_MEDIA_TYPE_RE = re.compile(
    rf"^({_TOKEN})/({_TOKEN})((?:\s*;\s*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\x00-\x1f]*\"))*)\s*$"
)
_HEX64_RE = re.compile(r"^[0-9a-fA-F]{64}$")
#: Characters that reorder text: they can disguise ``evil.exe`` as ``exe.pdf``.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
MAX_METADATA_ENTRIES = 32
MAX_METADATA_BYTES = 8 * 1024


def clean_filename(value: str) -> str:
    """A filename as metadata: NFC, 1-255 characters, no path, no control characters."""
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ValueError("must not be empty")
    if len(name) > 255:
        raise ValueError("must be at most 255 characters")
    for ch in name:
        if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
            raise ValueError("must not contain control characters")
    if "/" in name or "\\" in name:
        raise ValueError("must be a file name, not a path")
    if name in (".", ".."):
        raise ValueError("must be a file name")
    return name


def clean_content_type(value: str) -> str:
    """A well-formed media type, lower-cased, parameters kept."""
    if len(value) > 255:
        raise ValueError("must be at most 255 characters")
    match = _MEDIA_TYPE_RE.match(value.strip())
    if not match:
        raise ValueError("must be a media type such as 'video/mp4'")
    kind, subtype, params = match.groups()
    return f"{kind.lower()}/{subtype.lower()}{params or ''}"


def decode_sha256(value: str) -> bytes:
    """A SHA-256 digest given as 64 hex digits or as base64 (S3's form)."""
    value = value.strip()
    if _HEX64_RE.match(value):
        return bytes.fromhex(value)
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 32:
        raise ValueError("must be a SHA-256 digest: 64 hex digits or 44 base64 characters")
    return digest


def check_metadata(value: dict[str, str]) -> dict[str, str]:
    """User metadata within bounds: at most 32 entries, keys of 1-128 characters, 8 KiB."""
    if len(value) > MAX_METADATA_ENTRIES:
        raise ValueError(f"must have at most {MAX_METADATA_ENTRIES} entries")
    for key in value:
        if not 1 <= len(key) <= 128:
            raise ValueError("keys must be 1 to 128 characters")
    if len(json.dumps(value).encode()) > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")
    return value


class CreateUpload(BaseModel):
    """A request to upload one file. ``fileName``, ``fileType`` and ``fileSize`` are aliases."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "filename": "holiday.mp4",
                    "content_type": "video/mp4",
                    "size": 734003200,
                    "checksum_sha256": (
                        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                    ),
                    "metadata": {"album": "2026"},
                }
            ]
        },
    )

    filename: StrictStr = Field(
        validation_alias=AliasChoices("filename", "fileName"),
        description="The original name; kept as metadata, never used in the object key.",
    )
    content_type: StrictStr = Field(
        validation_alias=AliasChoices("content_type", "fileType", "contentType"),
        description="The media type the uploader declares; it must be in the allow-list.",
    )
    size: Annotated[int, Field(strict=True, gt=0)] = Field(
        validation_alias=AliasChoices("size", "fileSize"), description="Exact size in bytes."
    )
    checksum_sha256: StrictStr | None = Field(
        default=None,
        validation_alias=AliasChoices("checksum_sha256", "checksumSha256"),
        description="SHA-256 of the whole file (hex or base64); the store then refuses any "
        "other body.",
    )
    metadata: dict[StrictStr, StrictStr] = Field(
        default_factory=dict, description="Up to 32 string pairs, 8 KiB in all."
    )
    multipart: StrictBool | None = Field(
        default=None,
        description="true: upload in parts whatever the size; false: one PUT (at most "
        "MAX_SINGLE_PUT_SIZE); null: parts above MULTIPART_THRESHOLD.",
    )
    part_size: Annotated[int, Field(strict=True, gt=0)] | None = Field(
        default=None,
        validation_alias=AliasChoices("part_size", "partSize"),
        description="Preferred part size in bytes; honoured within S3's limits (5 MiB to "
        "5 GiB, at most 10,000 parts).",
    )
    part_checksums: StrictBool = Field(
        default=False,
        validation_alias=AliasChoices("part_checksums", "partChecksums"),
        description="Multipart only: each part will be signed with its SHA-256, and the store "
        "refuses a part whose bytes differ. Every part must then be signed with one.",
    )

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str) -> str:
        return clean_filename(value)

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, value: str) -> str:
        return clean_content_type(value)

    @field_validator("checksum_sha256")
    @classmethod
    def _checksum(cls, value: str | None) -> str | None:
        return None if value is None else decode_sha256(value).hex()

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        return check_metadata(value)


class SingleUploadTicket(BaseModel):
    """Where and how to send the bytes: make exactly this request before ``expires_at``."""

    id: uuid.UUID
    key: str
    bucket: str
    status: FileStatus
    method: Literal["PUT"]
    url: str
    headers: dict[str, str] = Field(
        description="Send these headers exactly as given: they are signed into the URL."
    )
    expires_at: datetime


class MultipartUploadTicket(BaseModel):
    """Upload in parts: sign part URLs with ``POST /uploads/{id}/parts``, then complete."""

    id: uuid.UUID
    key: str
    bucket: str
    status: FileStatus
    method: Literal["multipart"]
    upload_id: str
    part_size: int = Field(description="Every part is this long, but the last.")
    part_count: int
    part_checksums: bool = Field(description="Every part must be signed with its SHA-256.")


UploadTicket = Annotated[SingleUploadTicket | MultipartUploadTicket, Field(discriminator="method")]

#: Part URLs signed by one request, at most.
MAX_PARTS_PER_REQUEST = 1000


class SignParts(BaseModel):
    """Part numbers to sign upload URLs for, with each part's SHA-256 when the upload takes
    checksums."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"part_numbers": [1, 2]},
                {
                    "part_numbers": [1],
                    "checksums_sha256": {"1": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="},
                },
            ]
        },
    )

    part_numbers: list[Annotated[int, Field(strict=True, ge=1, le=10_000)]] = Field(
        min_length=1,
        max_length=MAX_PARTS_PER_REQUEST,
        validation_alias=AliasChoices("part_numbers", "partNumbers"),
    )
    checksums_sha256: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("checksums_sha256", "checksumsSha256"),
        description="Part number (as a string) to that part's SHA-256, hex or base64.",
    )

    @field_validator("part_numbers")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("must not repeat a part number")
        return value

    @field_validator("checksums_sha256")
    @classmethod
    def _checksums(cls, value: dict[str, str]) -> dict[str, str]:
        cleaned = {}
        for number, digest in value.items():
            if not number.isdigit():
                raise ValueError("keys must be part numbers")
            cleaned[str(int(number))] = base64.b64encode(decode_sha256(digest)).decode()
        return cleaned

    def checksum_of(self, part_number: int) -> bytes | None:
        digest = self.checksums_sha256.get(str(part_number))
        return base64.b64decode(digest) if digest else None


class PartUrl(BaseModel):
    part_number: int
    size: int = Field(description="The part's exact length: send exactly this many bytes.")
    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str] = Field(
        description="Send these headers exactly as given: they are signed into the URL."
    )
    expires_at: datetime


class PartUrls(BaseModel):
    upload_id: str
    parts: list[PartUrl]


class UploadedPart(BaseModel):
    part_number: int
    size: int
    etag: str
    checksum_sha256: str | None = Field(description="Hex SHA-256, when the part carried one.")


class UploadParts(BaseModel):
    """The parts the store holds for an upload in progress: send the others, then complete."""

    id: uuid.UUID
    upload_id: str
    part_size: int
    part_count: int
    parts: list[UploadedPart]


class ClaimedPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_number: Annotated[int, Field(strict=True, ge=1, le=10_000)] = Field(
        validation_alias=AliasChoices("part_number", "PartNumber", "partNumber")
    )
    etag: StrictStr = Field(max_length=128, validation_alias=AliasChoices("etag", "ETag", "Etag"))

    @field_validator("etag")
    @classmethod
    def _etag(cls, value: str) -> str:
        return normalize_etag(value)


class CompleteUpload(BaseModel):
    """Optional: the parts (number and ETag) the client sent; each must match the store's."""

    model_config = ConfigDict(extra="forbid")

    parts: list[ClaimedPart] | None = Field(default=None, max_length=10_000)

    @field_validator("parts")
    @classmethod
    def _unique(cls, value: list[ClaimedPart] | None) -> list[ClaimedPart] | None:
        if value is not None and len({part.part_number for part in value}) != len(value):
            raise ValueError("must not repeat a part number")
        return value


def normalize_etag(value: str) -> str:
    """An ETag with its quotes, as S3 answers it, whether it came quoted or not."""
    bare = value.strip().removeprefix("W/").strip('"')
    if not bare or any(ch in bare for ch in '"\\') or not bare.isprintable():
        raise ValueError("is not an ETag")
    return f'"{bare}"'


class AbortedUpload(FileOut):
    """The aborted file (status ``aborted``), and whether the store still holds its bytes."""

    cleanup_pending: bool = Field(
        description="`false` (200): the store's parts and bytes are freed. `true` (202): the "
        "store could not be reached; a background job frees them once it can (nothing to do "
        "for the client, though calling again tries again at once)."
    )
