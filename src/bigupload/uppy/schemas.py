"""What the Uppy routes accept and answer, in the names Uppy's ``@uppy/aws-s3`` plugin uses."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

from bigupload.errors import ErrorDetail
from bigupload.uploads.schemas import (
    ClaimedPart,
    check_metadata,
    clean_content_type,
    clean_filename,
)

#: The type of a file Uppy knows no type for.
DEFAULT_CONTENT_TYPE = "application/octet-stream"
#: Part URLs signed by one batch request, at most.
MAX_BATCH = 1000


class UppyErrorBody(BaseModel):
    """The API's error shape, with the message also at the top, where Uppy's client reads it."""

    error: ErrorDetail
    message: str = Field(description="The same as `error.message`.")


def _metadata_value(value: Any) -> str | None:
    """A metadata value as text: Uppy sends whatever its file's meta holds (names, types, a
    ``relativePath`` that is often ``null``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class UppyFile(BaseModel):
    """A file Uppy is about to upload: ``POST /s3/multipart``'s body, and ``GET /s3/params``'s
    query (``filename``, ``type``, ``metadata[<name>]=<value>``).

    The recorded filename is ``metadata.name`` when given (Uppy's name for the file), else
    ``filename``; the type is ``type``, else ``metadata.type``, else
    ``application/octet-stream``. Metadata values that are not strings are recorded as JSON;
    ``null`` values are dropped. Metadata is bounded as on ``POST /api/v1/uploads``.
    """

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "filename": "holiday.mp4",
                    "type": "video/mp4",
                    "metadata": {"name": "holiday.mp4", "type": "video/mp4"},
                }
            ]
        },
    )

    filename: StrictStr | None = Field(default=None, max_length=1024)
    type: StrictStr | None = Field(default=None, max_length=1024)
    metadata: dict[StrictStr, Any] = Field(default_factory=dict)

    @field_validator("metadata", mode="after")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        cleaned = {
            key: text for key, raw in value.items() if (text := _metadata_value(raw)) is not None
        }
        return check_metadata(cleaned)

    @model_validator(mode="after")
    def _resolve(self) -> UppyFile:
        name = self.metadata.get("name") or self.filename
        if not name:
            raise ValueError("filename: a filename (or metadata[name]) is required")
        try:
            self.filename = clean_filename(name)
        except ValueError as exc:
            raise ValueError(f"filename: {exc}") from None
        try:
            self.type = clean_content_type(
                self.type or self.metadata.get("type") or DEFAULT_CONTENT_TYPE
            )
        except ValueError as exc:
            raise ValueError(f"type: {exc}") from None
        return self

    @property
    def name(self) -> str:
        assert self.filename is not None  # resolved by validation
        return self.filename

    @property
    def content_type(self) -> str:
        assert self.type is not None  # resolved by validation
        return self.type


class UploadParams(BaseModel):
    """A form POST to the store: send ``fields`` in this order, then the file as ``file``."""

    method: Literal["POST"] = "POST"
    url: str
    fields: dict[str, str] = Field(description="Include `key`: where the file will be stored.")
    expires: int = Field(description="Seconds the form stays valid.")
    key: str


class MultipartStarted(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    key: str
    upload_id: str = Field(alias="uploadId")
    bucket: str


class UppyPart(BaseModel):
    """A part the store holds, as S3's ListParts (and so Companion) names it."""

    model_config = ConfigDict(populate_by_name=True)

    part_number: int = Field(alias="PartNumber")
    etag: str = Field(alias="ETag")
    size: int = Field(alias="Size")
    last_modified: datetime | None = Field(
        default=None, alias="LastModified", description="When the store took the part."
    )


class SignedPart(BaseModel):
    url: str
    expires: int = Field(description="Seconds the URL stays valid.")
    headers: dict[str, str] | None = Field(
        default=None, description="Only when the PUT must carry these headers."
    )


class SignedBatch(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    presigned_urls: dict[str, str] = Field(
        alias="presignedUrls", description="Part number (as a string) to its upload URL."
    )


class CompleteParts(BaseModel):
    """The parts that make the file, each with the ETag the store answered (quoted or not)."""

    model_config = ConfigDict(extra="ignore")

    parts: Annotated[list[ClaimedPart], Field(min_length=1, max_length=10_000)]

    @field_validator("parts")
    @classmethod
    def _unique(cls, value: list[ClaimedPart]) -> list[ClaimedPart]:
        if len({part.part_number for part in value}) != len(value):
            raise ValueError("must not repeat a part number")
        return value


class Completed(BaseModel):
    location: str = Field(
        description="The object's URL in the store, as S3's CompleteMultipartUpload answers "
        "it (on the local store: `<PUBLIC_URL>/store/<key>`), the same kind of URL a single "
        "upload's form POST answers as its `Location`. It names the object and grants no "
        "access: download through `GET /api/v1/files/{id}/download`."
    )
    key: str
    bucket: str


class Aborted(BaseModel):
    """200 ``{}``: the upload is aborted and its parts freed. 202 ``{"cleanupPending": true}``:
    aborted, and its parts are freed by a background job once the store can be reached."""

    model_config = ConfigDict(populate_by_name=True)

    cleanup_pending: bool | None = Field(default=None, alias="cleanupPending")
