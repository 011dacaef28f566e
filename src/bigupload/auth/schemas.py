"""What the sign-in routes accept and answer."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from bigupload.config import Settings


class SignIn(BaseModel):
    """An API key to exchange for a session cookie."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"api_key": "bu_…"}]})

    api_key: str = Field(min_length=1, max_length=256)


class Limits(BaseModel):
    """What the service accepts, to show and enforce before an upload starts."""

    max_file_size: int = Field(description="Bytes.")
    max_single_put_size: int = Field(description="Bytes; larger files go in parts.")
    multipart_threshold: int = Field(description="Bytes; from this size uploads use parts.")
    allowed_content_types: list[str] = Field(description="Media types and ranges; `*/*`: any.")
    url_expiry_seconds: int = Field(description="How long an upload URL stays valid.")

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_file_size=settings.max_file_size,
            max_single_put_size=settings.max_single_put_size,
            multipart_threshold=settings.multipart_threshold,
            allowed_content_types=list(settings.allowed_content_types),
            url_expiry_seconds=settings.url_expiry_seconds,
        )


class SessionInfo(BaseModel):
    """Who is signed in, and what the service accepts."""

    owner: str
    key_name: str = Field(description="The name of the API key used to sign in.")
    csrf_token: str | None = Field(
        description="Send it as `X-CSRF-Token` with requests that use the session cookie; "
        "null for bearer callers."
    )
    expires_at: datetime | None = Field(description="When the session ends; null for bearers.")
    limits: Limits
