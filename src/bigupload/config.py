"""Settings: one typed source of truth, from ``BIGUPLOAD_*`` variables and an optional ``.env``."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

#: S3's ceiling for one object, and so ours.
S3_MAX_OBJECT_SIZE = 5 * TiB
#: S3's ceiling for one PUT, and so for one part.
S3_MAX_PUT_SIZE = 5 * GiB
#: S3's floor for a part other than the last.
S3_MIN_PART_SIZE = 5 * MiB

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}
_MEDIA_RANGE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/([a-z0-9][a-z0-9!#$&^_.+-]*|\*)$")
#: A JWT owner prefix begins object keys (``uploads/<prefix><subject>/...``): a safe alphabet.
_OWNER_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "supersecret", "password", "test"}


class ConfigError(Exception):
    """Invalid configuration, reported as one line at start."""


def parse_size(value: object) -> int:
    """Accept ``1073741824``, ``"1GiB"``, ``"512M"`` or ``"5 TiB"`` and answer bytes."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string such as '5GiB'")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            unit = (match.group(2) or "").upper()[:1]
            return int(match.group(1)) * _UNITS[unit]
    raise ValueError(f"{value!r} is not a size (use bytes, or a number with K, M, G or T)")


_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> int:
    """Accept ``604800``, ``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, or ``0`` / ``"off"`` (none),
    and answer seconds (``0`` for none)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string such as '7d'")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str):
        if value.strip().lower() == "off":
            return 0
        match = _DURATION_RE.match(value)
        if match:
            return int(match.group(1)) * _SECONDS[match.group(2).lower()]
    raise ValueError(f"{value!r} is not a duration (seconds, a number with s, m, h or d, or off)")


class WebhookEndpoint(BaseModel):
    """One receiver of signed events (Standard Webhooks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    #: ``whsec_`` followed by base64 of at least 24 random bytes, as Standard Webhooks says.
    secret: str
    #: Event types to send (``file.completed``, ...); empty sends every type.
    events: tuple[str, ...] = ()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        import base64
        import binascii

        raw = value.removeprefix("whsec_")
        try:
            key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be 'whsec_' followed by base64") from None
        if len(key) < 24:
            raise ValueError("must hold at least 24 random bytes (base64 after 'whsec_')")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BIGUPLOAD_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    data_dir: Path = Path("./bigupload-data")
    database_url: str | None = None
    #: How long a request may wait on the registry (a lock, a connection) before it is 503.
    database_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    storage: Literal["local", "s3"] = "local"

    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_conditional_writes: bool = True
    #: What ``bigupload storage setup`` writes and ``check`` (and ``serve``) expect of the bucket.
    #: Origins of the pages that upload to the bucket; none: the service's own and CORS_ORIGINS.
    s3_cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    s3_abort_incomplete_days: int = Field(default=7, ge=1, le=3650)
    s3_events_queue_arn: str | None = None
    s3_events_topic_arn: str | None = None
    s3_default_encryption: Literal["sse-s3", "sse-kms"] | None = None
    s3_kms_key_id: str | None = None

    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    secret_key: str | None = None
    url_expiry_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    download_expiry_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    max_file_size: Annotated[int, NoDecode] = S3_MAX_OBJECT_SIZE
    max_single_put_size: Annotated[int, NoDecode] = S3_MAX_PUT_SIZE
    multipart_threshold: Annotated[int, NoDecode] = 100 * MiB
    part_size: Annotated[int, NoDecode] = 16 * MiB
    allowed_content_types: Annotated[tuple[str, ...], NoDecode] = ("*/*",)
    jwt_secret: str | None = None
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_algorithms: Annotated[tuple[str, ...] | None, NoDecode] = None
    jwt_owner_claim: str = "sub"
    #: Put before every JWT owner, so a token's subject never names an API key's owner.
    jwt_owner_prefix: str = "jwt."
    auth_cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    rate_limit: str = "100/second;3000/minute"
    rate_limit_storage: str = "memory://"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    # Background jobs: processing, notifications and expiry.
    run_jobs: bool = True
    job_concurrency: int = Field(default=4, ge=1, le=64)
    job_poll_interval: float = Field(default=1.0, ge=0.01, le=60)
    #: PostgreSQL: ``auto`` wakes runners by LISTEN/NOTIFY (polling then only every
    #: ``job_notify_poll_interval``); ``off`` polls every ``job_poll_interval``.
    job_notify: Literal["auto", "off"] = "auto"
    job_notify_poll_interval: float = Field(default=30.0, ge=0.01, le=24 * 3600)
    #: Seconds at least between two dispatcher rounds woken by new file events.
    dispatch_gap: float = Field(default=0.1, ge=0, le=10)
    job_lease_seconds: float = Field(default=300.0, ge=1, le=24 * 3600)
    job_max_attempts: int = Field(default=8, ge=1, le=100)

    # Processing of each landed file.
    processing_steps: Annotated[tuple[str, ...], NoDecode] = ()
    processing_checksum: Literal["always", "declared"] = "always"
    content_type_check: Literal["off", "allow_list", "strict"] = "allow_list"

    # Storage event notifications (MinIO webhook, AWS SNS HTTP subscription, SQS).
    storage_events_token: str | None = None
    sns_topic_arns: Annotated[tuple[str, ...], NoDecode] = ()
    sns_cert_url_pattern: str = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]*\.pem$"
    sqs_queue_url: str | None = None
    aws_endpoint_url: str | None = None  # SQS and SNS (for MinIO, LocalStack, moto)
    #: The local store tells the service about objects it stored, as S3 would through events.
    local_storage_events: bool = True
    #: Below this much free space on the local store's disk, readiness reports the store full.
    local_min_free_space: Annotated[int, NoDecode] = 64 * MiB

    # Notifications.
    webhooks: tuple[WebhookEndpoint, ...] = ()
    webhook_max_attempts: int = Field(default=10, ge=1, le=100)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    smtp_url: str | None = None
    email_from: str = "bigupload@localhost"
    email_events: Annotated[tuple[str, ...], NoDecode] = ("completed", "failed")
    sns_publish_topic_arn: str | None = None

    # Expiry.
    pending_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    confirm_within_seconds: int | None = Field(default=None, ge=60)
    sweep_interval_seconds: float = Field(default=300.0, ge=1, le=24 * 3600)
    #: Finished jobs (and their delivery log entries) are deleted this long after they ended.
    job_retention: Annotated[int, NoDecode] = 7 * 24 * 3600
    #: Dispatched file events are deleted this long after they happened.
    event_retention: Annotated[int, NoDecode] = 30 * 24 * 3600

    # The web page, its sign-in sessions, and cross-origin callers.
    #: Origins (``https://app.example.com``) whose pages may call the API; none: same origin only.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    #: Origins whose pages may send bytes to the local store's URLs (``*``: any; the URL is the
    #: credential). S3 stores take their own bucket CORS rule instead.
    store_cors_origins: Annotated[tuple[str, ...], NoDecode] = ("*",)
    session_max_age_seconds: int = Field(default=12 * 3600, ge=60, le=30 * 24 * 3600)
    #: ``Secure`` on the session cookie: ``auto`` sets it when the request came over HTTPS.
    session_cookie_secure: Literal["auto", "always", "never"] = "auto"
    #: Sign-in attempts (``POST /api/v1/session``) per client address; ``off`` for none.
    session_rate_limit: str = "10/minute"
    #: Serve the uploader page at ``/``.
    web_page: bool = True

    # Metrics (Prometheus).
    #: ``GET /metrics`` (and the counting behind it); ``off``: the route answers 404.
    metrics: bool = True
    #: When set, a scrape must carry ``Authorization: Bearer <token>``.
    metrics_token: str | None = Field(default=None, min_length=16)
    #: The multiprocess directory ``serve`` empties at start; default
    #: ``DATA_DIR/metrics/serve-<PORT>``.
    metrics_dir: Path | None = None
    #: ``bigupload worker`` serves its own metrics on this port (none: not at all).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator(
        "processing_steps",
        "sns_topic_arns",
        "email_events",
        "cors_origins",
        "store_cors_origins",
        "s3_cors_origins",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("cors_origins", "store_cors_origins", "s3_cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for item in value:
            if item == "*" and info.field_name == "cors_origins":
                raise ValueError(
                    "'*' cannot be used: the API's browser callers send credentials (the session "
                    "cookie), which CORS forbids with '*'; list the origins"
                )
            if item != "*" and not re.match(r"^https?://[^/\s?#]+$", item):
                raise ValueError(
                    f"{item!r} is not an origin such as 'https://app.example.com' (no path)"
                )
        return tuple(item.rstrip("/") for item in value)

    @field_validator(
        "s3_events_queue_arn",
        "s3_events_topic_arn",
        "s3_default_encryption",
        "s3_kms_key_id",
        "metrics_token",
        "metrics_dir",
        "metrics_port",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("s3_events_queue_arn", "s3_events_topic_arn")
    @classmethod
    def _arn(cls, value: str | None, info: ValidationInfo) -> str | None:
        service = "sqs" if info.field_name == "s3_events_queue_arn" else "sns"
        pattern = rf"^arn:[a-z-]+:{service}:[a-z0-9-]*:[^:\s]*:\S+$"
        if value is not None and not re.match(pattern, value):
            raise ValueError(
                f"{value!r} is not an {service.upper()} ARN such as "
                f"'arn:aws:{service}:eu-west-1:123456789012:bigupload'"
            )
        return value

    @field_validator("email_events")
    @classmethod
    def _email_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from bigupload.files.status import FileStatus

        known = {status.value for status in FileStatus}
        for item in value:
            if item not in known:
                raise ValueError(f"{item!r} is not a file status ({', '.join(sorted(known))})")
        return value

    @field_validator("processing_steps")
    @classmethod
    def _dotted_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not re.match(r"^[A-Za-z_][\w.]*[:.][A-Za-z_]\w*$", item):
                raise ValueError(f"{item!r} is not a dotted path such as 'mypackage.steps:scan'")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^smtps?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an smtp:// or smtps:// URL")
        return value

    @field_validator("sns_cert_url_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a regular expression: {exc}") from None
        return value

    @field_validator("rate_limit", "session_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        if value.strip().lower() not in ("", "off"):
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a rate limit such as '100/second;3000/minute' or 'off'"
                ) from None
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _rate_limit_storage(cls, value: str) -> str:
        from limits.errors import ConfigurationError
        from limits.storage import storage_from_string

        uri = value if value.startswith("async+") else f"async+{value}"
        try:
            storage_from_string(uri)
        except ConfigurationError as exc:
            raise ValueError(
                f"{value!r} cannot be used ({exc}); for Redis, install 'bigupload[redis]'"
            ) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "max_file_size", "max_single_put_size", "multipart_threshold", "part_size", mode="before"
    )
    @classmethod
    def _size(cls, value: object) -> int:
        size = parse_size(value)
        if size <= 0:
            raise ValueError("must be positive")
        return size

    @field_validator("job_retention", "event_retention", mode="before")
    @classmethod
    def _retention(cls, value: object) -> int:
        return parse_duration(value)

    @field_validator("local_min_free_space", mode="before")
    @classmethod
    def _free_space(cls, value: object) -> int:
        size = parse_size(value)
        if size < 0:
            raise ValueError("must be 0 or more")
        return size

    @field_validator("max_file_size")
    @classmethod
    def _max_file_size(cls, value: int) -> int:
        if value > S3_MAX_OBJECT_SIZE:
            raise ValueError(f"must be at most {S3_MAX_OBJECT_SIZE} bytes (5 TiB, S3's limit)")
        return value

    @field_validator("max_single_put_size")
    @classmethod
    def _max_single_put_size(cls, value: int) -> int:
        if value > S3_MAX_PUT_SIZE:
            raise ValueError(f"must be at most {S3_MAX_PUT_SIZE} bytes (5 GiB, S3's PUT limit)")
        return value

    @field_validator("part_size")
    @classmethod
    def _part_size(cls, value: int) -> int:
        if not S3_MIN_PART_SIZE <= value <= S3_MAX_PUT_SIZE:
            raise ValueError("must be between 5 MiB and 5 GiB (S3's limits for a part)")
        return value

    @field_validator("allowed_content_types", mode="before")
    @classmethod
    def _content_types(cls, value: object) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError("must be a comma-separated list of media types such as 'video/*'")
        cleaned = tuple(str(item).strip().lower() for item in items if str(item).strip())
        if not cleaned:
            raise ValueError("must name at least one media type ('*/*' allows all)")
        for item in cleaned:
            if item != "*/*" and not _MEDIA_RANGE_RE.match(item):
                raise ValueError(f"{item!r} is not a media type or range such as 'image/*'")
        return cleaned

    @field_validator("public_url", "s3_endpoint_url", "jwt_jwks_url", "aws_endpoint_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("public_url", "s3_endpoint_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else value.rstrip("/")

    @field_validator("secret_key", "jwt_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.lower() in _PLACEHOLDER_SECRETS or len(value) < 32:
            raise ValueError("must be a random string of at least 32 characters")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("jwt_owner_prefix")
    @classmethod
    def _jwt_owner_prefix(cls, value: str) -> str:
        if value and not _OWNER_PREFIX_RE.fullmatch(value):
            raise ValueError(
                "must be empty or 1-32 letters, digits, '.', '_' or '-' starting with a letter "
                "or digit (it begins object keys)"
            )
        return value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _jwt_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(item.strip() for item in value.split(",") if item.strip())
        if isinstance(value, tuple | list):
            allowed = {
                "HS256",
                "HS384",
                "HS512",
                "RS256",
                "RS384",
                "RS512",
                "PS256",
                "PS384",
                "PS512",
                "ES256",
                "ES384",
                "ES512",
                "EdDSA",
            }
            for item in value:
                if item not in allowed:
                    raise ValueError(f"{item!r} is not a JWT signing algorithm bigupload accepts")
        return value

    @model_validator(mode="after")
    def _jwt_needs(self) -> Settings:
        if self.jwt_secret and self.jwt_jwks_url:
            raise ValueError("set BIGUPLOAD_JWT_SECRET or BIGUPLOAD_JWT_JWKS_URL, not both")
        if (self.jwt_secret or self.jwt_jwks_url) and not self.jwt_audience:
            raise ValueError("BIGUPLOAD_JWT_AUDIENCE is required when JWTs are accepted")
        return self

    @model_validator(mode="after")
    def _storage_needs(self) -> Settings:
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("BIGUPLOAD_S3_BUCKET is required when BIGUPLOAD_STORAGE=s3")
        if self.s3_events_queue_arn and self.s3_events_topic_arn:
            raise ValueError(
                "set BIGUPLOAD_S3_EVENTS_QUEUE_ARN or BIGUPLOAD_S3_EVENTS_TOPIC_ARN, not both "
                "(S3 refuses two destinations for the same events)"
            )
        if self.s3_kms_key_id and self.s3_default_encryption != "sse-kms":
            raise ValueError(
                "BIGUPLOAD_S3_KMS_KEY_ID needs BIGUPLOAD_S3_DEFAULT_ENCRYPTION=sse-kms"
            )
        return self

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'bigupload.db').resolve()}"

    @cached_property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 literal needs brackets in a URL
        return f"http://{host}:{self.port}"

    @cached_property
    def effective_secret_key(self) -> str:
        """The signing secret: configured, or generated once and kept in the data directory."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        try:
            return _read_secret(path)
        except FileNotFoundError:
            pass
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        # Written in full to a private (0600 from its creation) temporary file, then linked into
        # place: the secret is never readable by others, and a concurrent start never reads a
        # half-written file. If another process won the race, its secret is the one.
        tmp = self.data_dir / f".secret.key.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secret)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return _read_secret(path)
            except OSError:
                # No hard links on this file system: create the file in place, still 0600.
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    return _read_secret(path)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secret)
            return secret
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def content_type_allowed(self, content_type: str) -> bool:
        base = content_type.split(";", 1)[0].strip().lower()
        major = base.split("/", 1)[0]
        for allowed in self.allowed_content_types:
            if allowed in ("*/*", base) or allowed == f"{major}/*":
                return True
        return False


def _read_secret(path: Path) -> str:
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ConfigError(
            f"invalid configuration: {path} holds no usable secret; delete it to make a new one"
        )
    return secret


_SOURCE_ERROR_RE = re.compile(r'field "(?P<field>[^"]+)"')


def _undecodable(exc: SettingsError) -> str:
    """``BIGUPLOAD_WEBHOOKS: not valid JSON (...)`` from pydantic-settings' error."""
    match = _SOURCE_ERROR_RE.search(str(exc))
    name = f"BIGUPLOAD_{match.group('field').upper()}" if match else "a BIGUPLOAD_* variable"
    cause = exc.__cause__
    if isinstance(cause, ValueError):  # json.JSONDecodeError among them
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        return f"{name}: not valid JSON ({reason})"
    return f"{name}: cannot be read"


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning any validation problem into one readable :class:`ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:
        # A complex (JSON) field whose variable pydantic-settings could not decode.
        raise ConfigError("invalid configuration: " + _undecodable(exc)) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            # A model-level error has no field and names its variables in its message.
            problems.append(f"BIGUPLOAD_{field.upper()}: {message}" if field else message)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
