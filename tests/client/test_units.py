"""The client's pure parts: sizes, retries, rates, upload state, error answers."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bigupload.client import (
    AuthError,
    BigUploadError,
    ConflictError,
    NotFoundError,
    RetryPolicy,
    ServerError,
    UploadInProgressError,
    retry,
)
from bigupload.client.api import normalize_base_url
from bigupload.client.errors import api_error, is_checksum_refusal, is_expired, store_error
from bigupload.client.progress import Meter
from bigupload.client.resume import FileIdentity, StateStore, UploadState
from bigupload.client.transfer import part_length
from bigupload.client.units import format_size, parse_size
from bigupload.client.upload import guess_content_type

MiB = 1024 * 1024


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("123", 123), ("64MiB", 64 * MiB), ("64M", 64 * MiB), ("5 GiB", 5 << 30), ("1k", 1024)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1", "1.5G", "64 MB extra"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(None) == "-"
    assert format_size(1000) == "1000 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(5 * MiB) == "5.0 MiB"
    assert format_size(3 << 40) == "3.0 TiB"


def test_part_lengths_add_up() -> None:
    size, part = 23 * MiB + 5, 5 * MiB
    lengths = [part_length(size, part, n) for n in range(1, 6)]
    assert lengths == [part] * 4 + [3 * MiB + 5]
    assert part_length(size, part, 6) == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.mp4", "video/mp4"),
        ("notes.txt", "text/plain"),
        ("backup.tar.gz", "application/gzip"),
        ("disk.img.xz", "application/x-xz"),
        ("no-extension", "application/octet-stream"),
        ("odd.zzzzz", "application/octet-stream"),
    ],
)
def test_guess_content_type(name: str, expected: str) -> None:
    assert guess_content_type(name) == expected


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("https://up.example.com/api/v1/", "https://up.example.com"),
        ("https://example.com/bigupload", "https://example.com/bigupload"),
    ],
)
def test_base_url(url: str, base: str) -> None:
    assert normalize_base_url(url) == base


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://x", "http://", ""])
def test_base_url_refuses(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        normalize_base_url(url)


# -- retries ----------------------------------------------------------------------------------


class Waits(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def failing(outcomes: list[BaseException | str]) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return calls, attempt


def test_retries_back_off_with_full_jitter() -> None:
    waits = Waits()
    policy = RetryPolicy(retries=5, backoff=1.0, max_backoff=4.0, sleep=waits)
    error = ServerError("down", status=500)
    calls, attempt = failing([retry.Retry(error)] * 5 + ["ok"])
    assert retry.call(policy, attempt) == "ok"
    assert len(calls) == 6
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(waits) == 5
    assert all(0 <= w <= c for w, c in zip(waits, ceilings, strict=True))


def test_retry_after_is_honoured_and_capped() -> None:
    waits = Waits()
    policy = RetryPolicy(retries=3, max_retry_after=60, sleep=waits)
    error = ServerError("busy", status=503)
    outcomes: list[BaseException | str] = [
        retry.Retry(error, retry_after=7),
        retry.Retry(error, retry_after=3600),
        retry.Retry(error, immediate=True),
        "ok",
    ]
    _, attempt = failing(outcomes)
    assert retry.call(policy, attempt) == "ok"
    assert waits == [7.0, 60.0, 0.0]


def test_the_last_error_is_raised_when_attempts_run_out() -> None:
    policy = RetryPolicy(retries=2, sleep=Waits())
    errors = [ServerError(f"down {i}", status=500) for i in range(3)]
    calls, attempt = failing([retry.Retry(e) for e in errors])
    with pytest.raises(ServerError, match="down 2"):
        retry.call(policy, attempt)
    assert len(calls) == 3


def test_other_errors_are_not_retried() -> None:
    calls, attempt = failing([NotFoundError("gone", status=404), "ok"])
    with pytest.raises(NotFoundError):
        retry.call(RetryPolicy(sleep=Waits()), attempt)
    assert len(calls) == 1


def test_retry_after_header() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry.retry_after("5") == 5.0
    assert retry.retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry.retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry.retry_after(None) is None
    assert retry.retry_after("soon") is None


def test_a_negative_retry_count_is_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)


# -- progress ---------------------------------------------------------------------------------


def test_rate_ignores_what_was_done_before() -> None:
    meter = Meter(total=100 * MiB, window=5.0)
    assert meter.sample(40 * MiB, now=0.0).rate == 0.0  # resumed: not this run's speed
    assert meter.sample(50 * MiB, now=1.0).rate == 10 * MiB
    assert meter.sample(60 * MiB, now=2.0).rate == 10 * MiB
    progress = meter.sample(60 * MiB, now=20.0)  # stalled: the rate falls
    assert progress.rate < 2 * MiB
    assert (progress.bytes_done, progress.total) == (60 * MiB, 100 * MiB)


# -- upload state -----------------------------------------------------------------------------


def make_state(identity: FileIdentity) -> UploadState:
    return UploadState(
        identity.server,
        identity.path,
        identity.size,
        identity.mtime_ns,
        file_id="f1",
        method="multipart",
        upload_id="u1",
        part_size=5 * MiB,
        part_count=3,
        part_checksums=True,
        parts={2: '"etag2"', 1: '"etag1"'},
    )


@pytest.fixture
def local_file(tmp_path: Path) -> Path:
    path = tmp_path / "file.bin"
    path.write_bytes(b"x" * 1000)
    return path


def test_state_round_trips(tmp_path: Path, local_file: Path) -> None:
    store = StateStore(tmp_path / "cache")
    identity = FileIdentity.of("http://s", local_file)
    assert store.load(identity) is None
    store.save(identity, make_state(identity))
    loaded = store.load(identity)
    assert loaded == make_state(identity)
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".json"]  # no temporary
    store.discard(identity)
    assert store.load(identity) is None


def test_state_depends_on_server_and_file_version(tmp_path: Path, local_file: Path) -> None:
    store = StateStore(tmp_path / "cache")
    identity = FileIdentity.of("http://s", local_file)
    store.save(identity, make_state(identity))
    assert store.load(FileIdentity.of("http://other", local_file)) is None
    local_file.write_bytes(b"y" * 1001)
    changed = FileIdentity.of("http://s", local_file)
    assert store.load(changed) is None
    [(_, stale)] = store.stale(changed)
    assert stale is not None and stale.file_id == "f1"
    assert store.stale(identity) == []


def test_a_damaged_state_is_forgotten(tmp_path: Path, local_file: Path) -> None:
    store = StateStore(tmp_path / "cache")
    identity = FileIdentity.of("http://s", local_file)
    store.save(identity, make_state(identity))
    [path] = (tmp_path / "cache").glob("*.json")
    path.write_text('{"version": 1, "serv')
    assert store.load(identity) is None
    assert not path.exists()
    path.write_text(json.dumps({"version": 99}))
    assert store.load(identity) is None


def test_cache_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIGUPLOAD_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert StateStore().root == tmp_path / "elsewhere"


def _hold_lock(root: str, path: str, ready: object, release: object) -> None:
    store = StateStore(Path(root))
    with store.lock(FileIdentity.of("http://s", Path(path))):
        ready.set()  # type: ignore[attr-defined]
        release.wait(30)  # type: ignore[attr-defined]


def test_the_lock_keeps_out_another_process(tmp_path: Path, local_file: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(
        target=_hold_lock, args=(str(tmp_path / "cache"), str(local_file), ready, release)
    )
    holder.start()
    try:
        assert ready.wait(30)
        store = StateStore(tmp_path / "cache")
        identity = FileIdentity.of("http://s", local_file)
        with pytest.raises(UploadInProgressError), store.lock(identity):
            pass
        with store.lock(FileIdentity.of("http://other", local_file)):
            pass  # another server: another lock
    finally:
        release.set()
        holder.join(30)
        if holder.is_alive():
            holder.kill()
            holder.join()
    with store.lock(identity):
        pass  # released when its holder ends


# -- error answers ----------------------------------------------------------------------------


def answer(status: int, body: object = None, text: str = "", **headers: str) -> httpx.Response:
    if body is not None:
        return httpx.Response(status, json=body, headers=headers)
    return httpx.Response(status, text=text, headers=headers)


def test_api_errors_are_typed() -> None:
    body = {"error": {"code": "upload_incomplete", "message": "2 parts missing", "details": [1]}}
    error = api_error(answer(409, body))
    assert isinstance(error, ConflictError)
    assert (error.status, error.code, error.message, error.details) == (
        409,
        "upload_incomplete",
        "2 parts missing",
        [1],
    )
    assert isinstance(api_error(answer(401, {"error": {"code": "unauthenticated"}})), AuthError)
    assert isinstance(api_error(answer(404, text="nope")), NotFoundError)
    bare = api_error(answer(502, text="<html>bad gateway</html>"))
    assert isinstance(bare, ServerError) and bare.code == "server_error"
    assert "502" in bare.message
    assert type(api_error(answer(418, text=""))) is BigUploadError


S3_EXPIRED = (
    "<?xml version='1.0'?><Error><Code>AccessDenied</Code>"
    "<Message>Request has expired</Message></Error>"
)
S3_BAD_DIGEST = "<Error><Code>BadDigest</Code><Message>The SHA256 you specified did not match"
S3_DENIED = "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"


def test_store_refusals_are_recognized() -> None:
    assert store_error(answer(403, text=S3_EXPIRED)) == ("AccessDenied", "Request has expired")
    assert is_expired(403, *store_error(answer(403, text=S3_EXPIRED)))
    local = {"error": {"code": "url_expired", "message": "Request has expired"}}
    assert is_expired(403, *store_error(answer(403, local)))
    assert not is_expired(403, *store_error(answer(403, text=S3_DENIED)))
    assert is_checksum_refusal(400, *store_error(answer(400, text=S3_BAD_DIGEST)))
    local = {"error": {"code": "checksum_mismatch", "message": "differs"}}
    assert is_checksum_refusal(400, *store_error(answer(400, local)))
    assert is_checksum_refusal(400, "InvalidRequest", "Value for x-amz-checksum-sha256 is invalid")
    assert not is_checksum_refusal(400, "InvalidRequest", "something else")
    assert not is_checksum_refusal(403, "BadDigest", "")


def test_temporaries_of_a_killed_save_are_swept(tmp_path: Path, local_file: Path) -> None:
    store = StateStore(tmp_path / "cache")
    identity = FileIdentity.of("http://s", local_file)
    store.save(identity, make_state(identity))
    leftover = tmp_path / "cache" / f".{identity.path_key}-{identity.version_key}.123.ab.tmp"
    leftover.write_text('{"half')
    assert store.load(identity) == make_state(identity)
    assert not leftover.exists()
