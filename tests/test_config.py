"""Settings: sizes, media types, URLs, the generated secret, one-line configuration errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bigupload.config import (
    S3_MAX_OBJECT_SIZE,
    S3_MAX_PUT_SIZE,
    ConfigError,
    GiB,
    KiB,
    MiB,
    Settings,
    TiB,
    load_settings,
    parse_size,
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``.env`` and no ``BIGUPLOAD_*`` variable from the developer's shell reaches a test."""
    for name in list(os.environ):
        if name.startswith("BIGUPLOAD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp_path / "data"}
    values.update(overrides)
    return load_settings(**values)


def config_error(**overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    message = str(caught.value)
    assert message.startswith("invalid configuration: ")
    assert "\n" not in message
    return message


# -- parse_size ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1073741824, GiB),
        ("1073741824", GiB),
        ("5GiB", 5 * GiB),
        ("5gib", 5 * GiB),
        ("512M", 512 * MiB),
        ("512MB", 512 * MiB),
        ("5 TiB", 5 * TiB),
        (" 3k ", 3 * KiB),
        ("2KiB", 2 * KiB),
        ("7B", 7),
        ("7", 7),
        ("0", 0),
    ],
)
def test_parse_size_reads_bytes_and_binary_units(value: object, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    "value", ["-3", "1.5G", "5XB", "5 GiBs", "", "GiB", "ten", True, False, None, 1.5, [1]]
)
def test_parse_size_rejects_what_is_not_a_size(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


# -- defaults and sizes ---------------------------------------------------------------------------


def test_defaults_are_the_embedded_ones(tmp_path: Path) -> None:
    config = load_settings()
    assert config.data_dir == Path("bigupload-data")
    assert config.storage == "local"
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.url_expiry_seconds == 900
    assert config.max_file_size == S3_MAX_OBJECT_SIZE
    assert config.allowed_content_types == ("*/*",)
    expected_db = (tmp_path / "bigupload-data" / "bigupload.db").resolve()
    assert config.effective_database_url == f"sqlite+aiosqlite:///{expected_db}"


def test_sizes_are_read_from_strings(tmp_path: Path) -> None:
    config = settings(tmp_path, max_file_size="5GiB", max_single_put_size="512M")
    assert config.max_file_size == 5 * GiB
    assert config.max_single_put_size == 512 * MiB


def test_sizes_and_numbers_are_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIGUPLOAD_MAX_FILE_SIZE", "2TiB")
    monkeypatch.setenv("BIGUPLOAD_MAX_SINGLE_PUT_SIZE", "100 MiB")
    monkeypatch.setenv("BIGUPLOAD_URL_EXPIRY_SECONDS", "60")
    monkeypatch.setenv("BIGUPLOAD_STORAGE", "s3")
    monkeypatch.setenv("BIGUPLOAD_S3_BUCKET", "uploads")
    config = settings(tmp_path)
    assert config.max_file_size == 2 * TiB
    assert config.max_single_put_size == 100 * MiB
    assert config.url_expiry_seconds == 60
    assert (config.storage, config.s3_bucket) == ("s3", "uploads")


def test_env_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BIGUPLOAD_URL_EXPIRY_SECONDS=120\nBIGUPLOAD_PORT=9123\n")
    config = load_settings()
    assert (config.url_expiry_seconds, config.port) == (120, 9123)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_file_size", "-3"),
        ("max_file_size", "0"),
        ("max_file_size", 0),
        ("max_file_size", "6TiB"),
        ("max_file_size", True),
        ("max_single_put_size", "6GiB"),
        ("max_single_put_size", "lots"),
        ("part_size", "4MiB"),
        ("part_size", "6GiB"),
        ("part_size", "-1"),
        ("multipart_threshold", "0"),
        ("multipart_threshold", "big"),
    ],
)
def test_bad_sizes_fail_naming_the_variable(field: str, value: object) -> None:
    message = config_error(**{field: value})
    assert f"BIGUPLOAD_{field.upper()}" in message


def test_multipart_defaults_and_bounds(tmp_path: Path) -> None:
    config = settings(tmp_path)
    assert (config.multipart_threshold, config.part_size) == (100 * MiB, 16 * MiB)
    config = settings(tmp_path, part_size="5MiB", multipart_threshold="1GiB")
    assert (config.part_size, config.multipart_threshold) == (5 * MiB, 1024 * MiB)
    assert settings(tmp_path, part_size="5GiB").part_size == S3_MAX_PUT_SIZE


def test_size_limits_are_inclusive(tmp_path: Path) -> None:
    config = settings(tmp_path, max_file_size="5TiB", max_single_put_size="5GiB")
    assert config.max_file_size == S3_MAX_OBJECT_SIZE
    assert config.max_single_put_size == S3_MAX_PUT_SIZE


# -- content types --------------------------------------------------------------------------------


def test_allowed_types_are_parsed_from_a_comma_separated_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIGUPLOAD_ALLOWED_CONTENT_TYPES", " image/*, Text/Plain ,,video/mp4")
    config = settings(tmp_path)
    assert config.allowed_content_types == ("image/*", "text/plain", "video/mp4")


@pytest.mark.parametrize(
    ("content_type", "allowed"),
    [
        ("image/png", True),
        ("IMAGE/JPEG", True),
        ("image/svg+xml", True),
        ("text/plain", True),
        ("text/plain; charset=utf-8", True),
        ("Text/Plain;charset=UTF-8", True),
        ("text/html", False),
        ("text/plain-ish", False),
        ("video/mp4", True),
        ("video/mp4; codecs=avc1", True),
        ("video/webm", False),
        ("imagex/png", False),
        ("application/octet-stream", False),
    ],
)
def test_content_type_allowed_with_ranges_and_parameters(
    tmp_path: Path, content_type: str, allowed: bool
) -> None:
    config = settings(tmp_path, allowed_content_types="image/*,text/plain,video/mp4")
    assert config.content_type_allowed(content_type) is allowed


@pytest.mark.parametrize(
    "content_type", ["application/octet-stream", "video/mp4", "x-custom/thing; a=b"]
)
def test_any_type_is_allowed_by_default_and_by_star_star(tmp_path: Path, content_type: str) -> None:
    assert settings(tmp_path).content_type_allowed(content_type)
    assert settings(tmp_path, allowed_content_types="*/*").content_type_allowed(content_type)


def test_allowed_types_as_a_list(tmp_path: Path) -> None:
    config = settings(tmp_path, allowed_content_types=["application/pdf"])
    assert config.allowed_content_types == ("application/pdf",)
    assert config.content_type_allowed("application/pdf")
    assert not config.content_type_allowed("application/zip")


@pytest.mark.parametrize("value", ["notatype", "", " , ", "image/", "*/png", "a b/c", 5])
def test_invalid_allowed_types_fail_naming_the_variable(value: object) -> None:
    assert "BIGUPLOAD_ALLOWED_CONTENT_TYPES" in config_error(allowed_content_types=value)


# -- database URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_urls_are_rewritten_for_asyncpg(tmp_path: Path, scheme: str) -> None:
    config = settings(tmp_path, database_url=f"{scheme}://u:p@db.internal:5432/bigupload")
    expected = "postgresql+asyncpg://u:p@db.internal:5432/bigupload"
    assert config.database_url == expected
    assert config.effective_database_url == expected


def test_async_urls_are_kept(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    assert settings(tmp_path, database_url=url).effective_database_url == url


@pytest.mark.parametrize("url", ["mysql://x", "sqlite:///plain.db", "postgresql+psycopg://h/d"])
def test_unsupported_database_urls_fail(url: str) -> None:
    assert "BIGUPLOAD_DATABASE_URL" in config_error(database_url=url)


def test_database_url_password_is_not_echoed_in_the_error() -> None:
    assert "hunter2-pw" not in config_error(database_url="mysql://u:hunter2-pw@h/d")


# -- public URL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000"),
        ("0.0.0.0", 9000, "http://127.0.0.1:9000"),
        ("::", 8080, "http://127.0.0.1:8080"),
        ("files.internal", 8000, "http://files.internal:8000"),
        ("::1", 8001, "http://[::1]:8001"),
    ],
)
def test_public_url_is_derived_from_host_and_port(
    tmp_path: Path, host: str, port: int, expected: str
) -> None:
    assert settings(tmp_path, host=host, port=port).effective_public_url == expected


def test_configured_public_url_wins_without_trailing_slash(tmp_path: Path) -> None:
    config = settings(tmp_path, public_url="https://up.example.com/", host="0.0.0.0", port=9)
    assert config.effective_public_url == "https://up.example.com"


@pytest.mark.parametrize("url", ["ftp://files.example.com", "up.example.com", "http://"])
def test_public_url_must_be_http(url: str) -> None:
    assert "BIGUPLOAD_PUBLIC_URL" in config_error(public_url=url)


@pytest.mark.parametrize(("field", "value"), [("port", 0), ("port", 65536), ("port", "abc")])
def test_bad_port_fails(field: str, value: object) -> None:
    assert "BIGUPLOAD_PORT" in config_error(**{field: value})


# -- secret key ---------------------------------------------------------------------------------


def test_secret_key_is_generated_once_private_and_stable(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    first = settings(tmp_path, data_dir=data_dir).effective_secret_key
    path = data_dir / "secret.key"
    assert len(first) >= 32
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = settings(tmp_path, data_dir=data_dir).effective_secret_key
    assert second == first
    assert sorted(p.name for p in data_dir.iterdir()) == ["secret.key"]


def test_each_data_dir_gets_its_own_secret(tmp_path: Path) -> None:
    one = settings(tmp_path, data_dir=tmp_path / "one").effective_secret_key
    two = settings(tmp_path, data_dir=tmp_path / "two").effective_secret_key
    assert one != two


def test_configured_secret_key_is_used_and_nothing_is_written(tmp_path: Path) -> None:
    secret = "s" * 40
    config = settings(tmp_path, secret_key=secret)
    assert config.effective_secret_key == secret
    assert not (tmp_path / "data" / "secret.key").exists()


@pytest.mark.parametrize("secret", ["changeme", "CHANGEME", "short-secret", "x" * 31])
def test_weak_secret_keys_fail_without_echoing_them(secret: str) -> None:
    message = config_error(secret_key=secret)
    assert "BIGUPLOAD_SECRET_KEY" in message
    assert secret not in message


def test_an_empty_secret_file_is_refused_not_used(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "secret.key").write_text("\n")
    with pytest.raises(ConfigError, match=r"secret\.key"):
        _ = settings(tmp_path).effective_secret_key


# -- storage and errors -------------------------------------------------------------------------


def test_s3_needs_a_bucket() -> None:
    message = config_error(storage="s3")
    assert "BIGUPLOAD_S3_BUCKET" in message
    assert message.count("configuration") == 1


def test_s3_with_a_bucket_is_accepted(tmp_path: Path) -> None:
    config = settings(
        tmp_path, storage="s3", s3_bucket="uploads", s3_endpoint_url="http://minio:9000/"
    )
    assert (config.storage, config.s3_bucket) == ("s3", "uploads")
    assert config.s3_endpoint_url == "http://minio:9000"


def test_unknown_storage_fails() -> None:
    assert "BIGUPLOAD_STORAGE" in config_error(storage="ftp")


def test_several_problems_are_reported_on_one_line() -> None:
    message = config_error(port=0, storage="ftp", url_expiry_seconds=0)
    for name in ("BIGUPLOAD_PORT", "BIGUPLOAD_STORAGE", "BIGUPLOAD_URL_EXPIRY_SECONDS"):
        assert name in message


# -- retention ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7d", 7 * 86400),
        ("12h", 43200),
        ("30m", 1800),
        ("90s", 90),
        ("3600", 3600),
        (60, 60),
        ("off", 0),
        ("OFF", 0),
        ("0", 0),
        (0, 0),
        (" 2 D ", 2 * 86400),
    ],
)
def test_retentions_read_durations(tmp_path: Path, value: object, expected: int) -> None:
    found = settings(tmp_path, job_retention=value, event_retention=value)
    assert (found.job_retention, found.event_retention) == (expected, expected)


def test_retentions_default_to_a_week_and_a_month(tmp_path: Path) -> None:
    found = settings(tmp_path)
    assert (found.job_retention, found.event_retention) == (7 * 86400, 30 * 86400)


@pytest.mark.parametrize("value", ["7w", "-1", -1, "", "soon"])
def test_bad_retentions_fail_naming_the_variable(value: object) -> None:
    message = config_error(event_retention=value)
    assert message == (
        f"invalid configuration: BIGUPLOAD_EVENT_RETENTION: {value!r} is not a duration "
        "(seconds, a number with s, m, h or d, or off)"
    )


def test_a_boolean_is_not_a_retention() -> None:
    assert config_error(job_retention=True) == (
        "invalid configuration: BIGUPLOAD_JOB_RETENTION: "
        "a duration must be seconds or a string such as '7d'"
    )
