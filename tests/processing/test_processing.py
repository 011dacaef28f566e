"""Processing of landed files, end to end: the API confirms an upload, the job runner processes it.

Run on SQLite and PostgreSQL; where the store matters (what it holds, what it reports), on the
local store and on moto over HTTP.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from bigupload import clock
from bigupload.files import repository
from bigupload.files.models import FileEvent, FileRecord
from bigupload.files.status import FileStatus
from bigupload.jobs.models import Job, JobStatus
from bigupload.jobs.runner import JobRunner
from bigupload.processing.job import enqueue_processing, process_kind
from bigupload.storage.base import Storage
from bigupload.storage.local import LocalStorage
from tests.api.helpers import sha256_hex, upload_request
from tests.api.test_complete import events_of
from tests.conftest import LOCAL_AND_MOTO, Caller, store_named

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(1).randbytes(3000)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + random.Random(2).randbytes(3000) + b"\n%%EOF\n"
TRAIL = [(None, "pending"), ("pending", "uploaded"), ("uploaded", "processing")]
STEPS = "tests.processing.sample_steps"


@pytest.fixture(params=LOCAL_AND_MOTO)
def storage(request: pytest.FixtureRequest) -> Storage:
    return store_named(request)


LOCAL_ONLY = pytest.mark.parametrize("storage", ["local"], indirect=True)


@pytest.fixture
def runner(app: FastAPI) -> JobRunner:
    settings = app.state.settings
    return JobRunner(
        sessionmaker=app.state.sessionmaker,
        storage=app.state.storage,
        settings=settings,
        kinds={"process": process_kind(settings)},
        worker_id="test-worker",
    )


@pytest.fixture
def later() -> Iterator[Callable[[float], None]]:
    """Move ``bigupload.clock`` forward by some seconds (it is restored afterwards)."""
    offset = timedelta()

    def advance(seconds: float) -> None:
        nonlocal offset
        offset += timedelta(seconds=seconds)
        clock.set_clock(lambda: datetime.now(UTC) + offset)

    try:
        yield advance
    finally:
        clock.set_clock(None)


async def land(
    caller: Caller, http: httpx.AsyncClient, data: bytes, **fields: Any
) -> dict[str, Any]:
    """Start an upload, PUT its bytes to the store, confirm it: the file is ``uploaded``."""
    started = await caller.post("/api/v1/uploads", json=upload_request(data, **fields))
    assert started.status_code == 201, started.text
    ticket = started.json()
    put = await http.put(ticket["url"], content=data, headers=ticket["headers"])
    assert put.status_code == 200, put.text
    done = await caller.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200, done.text
    record: dict[str, Any] = done.json()
    assert record["status"] == "uploaded"
    return record


async def replace(storage: Storage, http: httpx.AsyncClient, key: str, data: bytes) -> None:
    """Put other bytes under ``key`` after the upload was confirmed, through the store itself."""
    await storage.delete(key)
    request = storage.presign_put(
        key,
        content_type="application/octet-stream",
        size=len(data),
        checksum_sha256=None,
        expires_in=600,
    )
    put = await http.put(request.url, content=data, headers=request.headers)
    assert put.status_code == 200, put.text


async def file_of(caller: Caller, file_id: str) -> dict[str, Any]:
    response = await caller.get(f"/api/v1/files/{file_id}")
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


async def jobs_of(app: FastAPI, file_id: str) -> list[Job]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(Job).where(Job.file_id == uuid.UUID(file_id)).order_by(Job.id)
        )
        return list(rows.scalars())


async def event_reasons(app: FastAPI, file_id: str) -> list[tuple[str, str | None]]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(FileEvent).where(FileEvent.file_id == uuid.UUID(file_id)).order_by(FileEvent.id)
        )
        return [(e.to_status, e.reason) for e in rows.scalars()]


def declared(record: dict[str, Any]) -> dict[str, Any]:
    """What the uploader declared: processing never changes it."""
    names = ("filename", "content_type", "size", "metadata", "owner", "key", "uploaded_at")
    return {name: record[name] for name in names}


# -- the happy path -----------------------------------------------------------------------------


async def test_an_uploaded_file_is_processed_to_completed(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
) -> None:
    uploaded = await land(alice, store_http, PNG, filename="a.png", content_type="image/png")
    [job] = await jobs_of(app, uploaded["id"])
    assert (job.kind, job.status, job.owner) == ("process", JobStatus.QUEUED.value, "alice")

    assert await runner.run_until_idle() == 1

    record = await file_of(alice, uploaded["id"])
    assert record["status"] == "completed"
    assert record["detected_content_type"] == "image/png"
    assert record["stored_size"] == len(PNG)
    # S3's ETag is the MD5; the local store's, sent no Content-MD5, the SHA-256's first 16 bytes.
    if isinstance(app.state.storage, LocalStorage):
        assert record["etag"] == '"' + hashlib.sha256(PNG).hexdigest()[:32] + '"'
    else:
        assert record["etag"] == '"' + hashlib.md5(PNG).hexdigest() + '"'
    assert record["checksum_sha256"] == sha256_hex(PNG)  # computed: none was declared
    assert record["completed_at"] is not None
    assert record["error"] is None
    detected = record["results"]["detected"]
    assert detected["content_type"] == "image/png"
    assert detected["compatible_by"] == "equal"
    assert detected["sha256"] == sha256_hex(PNG)
    assert detected["stored_size"] == len(PNG)
    assert declared(record) == declared(uploaded)
    assert await events_of(app, uploaded["id"]) == [*TRAIL, ("processing", "completed")]
    [job] = await jobs_of(app, uploaded["id"])
    assert job.status == JobStatus.DONE.value
    assert job.result == {"outcome": "completed"}


async def test_a_declared_checksum_is_verified_and_kept(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
) -> None:
    uploaded = await land(
        alice, store_http, PDF, content_type="application/pdf", checksum_sha256=sha256_hex(PDF)
    )
    await runner.run_until_idle()
    record = await file_of(alice, uploaded["id"])
    assert record["status"] == "completed"
    assert record["detected_content_type"] == "application/pdf"
    assert record["checksum_sha256"] == sha256_hex(PDF)
    assert record["results"]["detected"]["sha256"] == sha256_hex(PDF)


# -- what the store holds -----------------------------------------------------------------------


async def test_a_truncated_object_fails_the_file(
    app: FastAPI,
    alice: Caller,
    store_http: httpx.AsyncClient,
    storage: Storage,
    runner: JobRunner,
) -> None:
    uploaded = await land(alice, store_http, PDF, content_type="application/pdf")
    await replace(storage, store_http, uploaded["key"], PDF[:1000])
    await runner.run_until_idle()

    record = await file_of(alice, uploaded["id"])
    assert record["status"] == "failed"
    assert record["error"] == (f"truncated: the store holds 1000 bytes, {len(PDF)} were uploaded")
    assert record["stored_size"] == len(PDF)  # what was uploaded stays on record
    assert record["results"]["detected"]["stored_size"] == 1000
    assert declared(record) == declared(uploaded)
    assert await events_of(app, uploaded["id"]) == [*TRAIL, ("processing", "failed")]
    [job] = await jobs_of(app, uploaded["id"])
    assert job.status == JobStatus.DONE.value
    assert job.result == {"outcome": "failed", "reason": record["error"]}


@LOCAL_ONLY
async def test_a_longer_object_is_a_size_mismatch(
    alice: Caller, store_http: httpx.AsyncClient, storage: Storage, runner: JobRunner
) -> None:
    uploaded = await land(alice, store_http, PDF, content_type="application/pdf")
    await replace(storage, store_http, uploaded["key"], PDF + b"more")
    await runner.run_until_idle()
    record = await file_of(alice, uploaded["id"])
    assert (record["status"], record["error"]) == (
        "failed",
        f"size_mismatch: the store holds {len(PDF) + 4} bytes, {len(PDF)} were uploaded",
    )


async def test_bytes_that_differ_from_the_declared_checksum_fail_the_file(
    app: FastAPI,
    alice: Caller,
    store_http: httpx.AsyncClient,
    storage: Storage,
    runner: JobRunner,
) -> None:
    uploaded = await land(
        alice, store_http, PDF, content_type="application/pdf", checksum_sha256=sha256_hex(PDF)
    )
    other = PDF[:-10] + b"0123456789"  # the same size
    await replace(storage, store_http, uploaded["key"], other)
    await runner.run_until_idle()

    record = await file_of(alice, uploaded["id"])
    assert record["status"] == "failed"
    assert record["error"] == (
        f"checksum_mismatch: the stored bytes' SHA-256 is {sha256_hex(other)}, "
        f"{sha256_hex(PDF)} was declared"
    )
    assert record["checksum_sha256"] == sha256_hex(PDF)  # the declared one stays
    assert record["results"]["detected"]["sha256"] == sha256_hex(other)
    assert declared(record) == declared(uploaded)
    assert await events_of(app, uploaded["id"]) == [*TRAIL, ("processing", "failed")]


async def test_an_object_gone_from_the_store_fails_the_file(
    alice: Caller, store_http: httpx.AsyncClient, storage: Storage, runner: JobRunner
) -> None:
    uploaded = await land(alice, store_http, PDF, content_type="application/pdf")
    await storage.delete(uploaded["key"])
    await runner.run_until_idle()
    record = await file_of(alice, uploaded["id"])
    assert (record["status"], record["error"]) == ("failed", "the stored object is gone")


@LOCAL_ONLY
async def test_an_unreachable_store_is_tried_again_later(
    app: FastAPI,
    alice: Caller,
    store_http: httpx.AsyncClient,
    storage: LocalStorage,
    runner: JobRunner,
    later: Callable[[float], None],
    tmp_path: Path,
) -> None:
    uploaded = await land(alice, store_http, PDF, content_type="application/pdf")
    moved = tmp_path / "away"
    shutil.move(storage.root, moved)  # the store's disk is gone for a while
    assert await runner.run_until_idle() == 1

    record = await file_of(alice, uploaded["id"])
    assert (record["status"], record["error"]) == ("processing", None)
    [job] = await jobs_of(app, uploaded["id"])
    assert job.status == JobStatus.QUEUED.value
    assert job.last_error is not None
    assert job.last_error.startswith("Retry: the store failed: StorageUnreachable")
    assert await runner.run_until_idle() == 0  # not due yet

    shutil.move(moved, storage.root)
    later(3600)
    assert await runner.run_until_idle() == 1
    assert (await file_of(alice, uploaded["id"]))["status"] == "completed"
    assert await events_of(app, uploaded["id"]) == [*TRAIL, ("processing", "completed")]


# -- the content type ---------------------------------------------------------------------------


class TestAllowList:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"allowed_content_types": "application/pdf"}

    async def test_a_declared_pdf_that_is_a_png_fails(
        self, app: FastAPI, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
    ) -> None:
        uploaded = await land(
            alice, store_http, PNG, filename="report.pdf", content_type="application/pdf"
        )
        await runner.run_until_idle()

        record = await file_of(alice, uploaded["id"])
        assert record["status"] == "failed"
        assert record["error"] == (
            "content_type_mismatch: declared application/pdf, but the bytes are image/png"
        )
        assert record["content_type"] == "application/pdf"  # as declared
        assert record["detected_content_type"] == "image/png"
        assert record["results"]["detected"]["compatible_by"] is None
        assert record["completed_at"] is None
        assert declared(record) == declared(uploaded)
        assert await events_of(app, uploaded["id"]) == [*TRAIL, ("processing", "failed")]
        [event] = [e for e in await event_reasons(app, uploaded["id"]) if e[0] == "failed"]
        assert event[1] == record["error"]

    @LOCAL_ONLY
    async def test_a_real_pdf_completes(
        self, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
    ) -> None:
        uploaded = await land(alice, store_http, PDF, content_type="application/pdf")
        await runner.run_until_idle()
        record = await file_of(alice, uploaded["id"])
        assert (record["status"], record["detected_content_type"]) == (
            "completed",
            "application/pdf",
        )


class TestCheckOff:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"allowed_content_types": "application/pdf", "content_type_check": "off"}

    @LOCAL_ONLY
    async def test_a_declared_pdf_that_is_a_png_completes_with_what_was_found(
        self, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
    ) -> None:
        uploaded = await land(alice, store_http, PNG, content_type="application/pdf")
        await runner.run_until_idle()
        record = await file_of(alice, uploaded["id"])
        assert record["status"] == "completed"
        assert record["content_type"] == "application/pdf"
        assert record["detected_content_type"] == "image/png"


class TestStrict:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"content_type_check": "strict"}

    @LOCAL_ONLY
    async def test_any_mismatch_fails_even_when_every_type_is_allowed(
        self, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
    ) -> None:
        png = await land(alice, store_http, PNG, content_type="video/mp4")
        text = await land(alice, store_http, b"id,name\n1,caf\xc3\xa9\n", content_type="text/csv")
        await runner.run_until_idle()
        assert (await file_of(alice, png["id"]))["error"] == (
            "content_type_mismatch: declared video/mp4, but the bytes are image/png"
        )
        record = await file_of(alice, text["id"])
        assert (record["status"], record["detected_content_type"]) == ("completed", "text/plain")
        assert record["results"]["detected"]["compatible_by"] == "text"


@LOCAL_ONLY
async def test_by_default_every_type_is_allowed_and_recorded(
    alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
) -> None:
    uploaded = await land(alice, store_http, PNG, content_type="video/mp4")
    await runner.run_until_idle()
    record = await file_of(alice, uploaded["id"])
    assert (record["status"], record["detected_content_type"]) == ("completed", "image/png")
    assert record["results"]["detected"]["compatible_by"] is None


# -- steps --------------------------------------------------------------------------------------


class TestSteps:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {
            "processing_steps": f"{STEPS}:fingerprint,{STEPS}.tail,{STEPS}:nothing",
            "processing_checksum": "declared",
        }

    async def test_configured_steps_run_and_their_results_are_stored(
        self, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
    ) -> None:
        uploaded = await land(alice, store_http, PNG, content_type="image/png")
        await runner.run_until_idle()
        record = await file_of(alice, uploaded["id"])
        assert record["status"] == "completed"
        assert record["results"]["fingerprint"] == {
            "head": PNG[:8].hex(),
            "file_id": uploaded["id"],
            "status": "processing",
            "detected": "image/png",
            "attempt": 1,
            "saw": ["detected"],
        }
        assert record["results"]["tail"] == {"tail": PNG[-4:].hex()}
        assert "nothing" not in record["results"]
        assert "sha256" not in record["results"]["detected"]  # "declared": none was
        assert record["checksum_sha256"] is None


class TestRejectingStep:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"processing_steps": f"{STEPS}:fingerprint,{STEPS}:reject"}

    @LOCAL_ONLY
    async def test_processing_failed_fails_the_file_with_its_reason(
        self, app: FastAPI, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
    ) -> None:
        uploaded = await land(alice, store_http, PNG, content_type="image/png")
        assert await runner.run_until_idle() == 1
        record = await file_of(alice, uploaded["id"])
        assert (record["status"], record["error"]) == (
            "failed",
            "virus_found: Eicar-Test-Signature",
        )
        assert record["results"]["fingerprint"]["head"] == PNG[:8].hex()  # earlier steps kept
        assert record["detected_content_type"] == "image/png"
        [job] = await jobs_of(app, uploaded["id"])
        assert (job.status, job.attempts) == (JobStatus.DONE.value, 1)


class TestFlakyStep:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"processing_steps": f"{STEPS}:flaky"}

    @LOCAL_ONLY
    async def test_a_step_failing_once_is_retried_and_the_file_completes(
        self,
        app: FastAPI,
        alice: Caller,
        store_http: httpx.AsyncClient,
        runner: JobRunner,
        later: Callable[[float], None],
    ) -> None:
        uploaded = await land(alice, store_http, PNG, content_type="image/png")
        assert await runner.run_until_idle() == 1
        [job] = await jobs_of(app, uploaded["id"])
        assert job.status == JobStatus.QUEUED.value
        assert job.last_error == (
            "Retry: processing step flaky failed: ConnectionError: the scanner is busy"
        )
        assert (await file_of(alice, uploaded["id"]))["status"] == "processing"

        later(3600)
        assert await runner.run_until_idle() == 1
        record = await file_of(alice, uploaded["id"])
        assert record["status"] == "completed"
        assert record["results"]["flaky"] == {"attempt": 2}
        assert await events_of(app, uploaded["id"]) == [*TRAIL, ("processing", "completed")]
        [job] = await jobs_of(app, uploaded["id"])
        assert (job.status, job.attempts) == (JobStatus.DONE.value, 2)


class TestBrokenStep:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"processing_steps": f"{STEPS}:broken", "job_max_attempts": 2}

    @LOCAL_ONLY
    async def test_a_step_that_always_fails_fails_the_file_when_attempts_run_out(
        self,
        app: FastAPI,
        alice: Caller,
        store_http: httpx.AsyncClient,
        runner: JobRunner,
        later: Callable[[float], None],
    ) -> None:
        uploaded = await land(alice, store_http, PNG, content_type="image/png")
        await runner.run_until_idle()
        assert (await file_of(alice, uploaded["id"]))["status"] == "processing"
        later(3600)
        await runner.run_until_idle()

        record = await file_of(alice, uploaded["id"])
        assert record["status"] == "failed"
        assert record["error"] == (
            "processing step broken failed: RuntimeError: the scanner is down (2 attempts)"
        )
        assert declared(record) == declared(uploaded)
        assert await events_of(app, uploaded["id"]) == [*TRAIL, ("processing", "failed")]
        [job] = await jobs_of(app, uploaded["id"])
        assert (job.status, job.attempts) == (JobStatus.DEAD.value, 2)
        later(3600)
        assert await runner.run_until_idle() == 0


class TestBadAnswer:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"processing_steps": f"{STEPS}:not_a_dict"}

    @LOCAL_ONLY
    async def test_a_step_that_answers_no_dict_fails_the_file(
        self, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
    ) -> None:
        uploaded = await land(alice, store_http, PNG, content_type="image/png")
        await runner.run_until_idle()
        record = await file_of(alice, uploaded["id"])
        assert (record["status"], record["error"]) == (
            "failed",
            "processing step not_a_dict returned list, not a dict",
        )


# -- at least once, effect once -----------------------------------------------------------------


@LOCAL_ONLY
async def test_a_job_whose_worker_died_after_processing_began_completes_once(
    app: FastAPI,
    alice: Caller,
    store_http: httpx.AsyncClient,
    runner: JobRunner,
    later: Callable[[float], None],
) -> None:
    uploaded = await land(alice, store_http, PNG, content_type="image/png")
    # A worker claimed the job, moved the file to processing, and died.
    async with app.state.sessionmaker() as session:
        record = await session.get(FileRecord, uuid.UUID(uploaded["id"]))
        assert record is not None
        assert await repository.transition(
            session, record, FileStatus.UPLOADED, FileStatus.PROCESSING
        )
        await session.execute(
            update(Job)
            .where(Job.file_id == record.id)
            .values(
                status=JobStatus.RUNNING.value,
                attempts=1,
                locked_by="dead-worker",
                locked_until=clock.now() + timedelta(seconds=300),
            )
        )
        await session.commit()
    assert await runner.run_until_idle() == 0  # its lease has not expired yet

    later(301)
    assert await runner.run_until_idle() == 1
    record_out = await file_of(alice, uploaded["id"])
    assert record_out["status"] == "completed"
    assert await events_of(app, uploaded["id"]) == [*TRAIL, ("processing", "completed")]
    [job] = await jobs_of(app, uploaded["id"])
    assert (job.status, job.attempts, job.locked_by) == (JobStatus.DONE.value, 2, None)
    later(3600)
    assert await runner.run_until_idle() == 0


@LOCAL_ONLY
async def test_a_job_for_a_deleted_file_is_done_without_touching_anything(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
) -> None:
    uploaded = await land(alice, store_http, PNG, content_type="image/png")
    assert (await alice.delete(f"/api/v1/files/{uploaded['id']}")).status_code == 204
    assert await runner.run_until_idle() == 1
    [job] = await jobs_of(app, uploaded["id"])
    assert (job.status, job.result) == (
        JobStatus.DONE.value,
        {"outcome": "skipped", "status": "deleted"},
    )
    assert await events_of(app, uploaded["id"]) == [*TRAIL[:2], ("uploaded", "deleted")]


@LOCAL_ONLY
async def test_a_job_for_a_file_failed_meanwhile_leaves_it_failed(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
) -> None:
    uploaded = await land(alice, store_http, PNG, content_type="image/png")
    changed = await alice.put(
        f"/api/v1/files/{uploaded['id']}/status", json={"status": "failed", "reason": "no"}
    )
    assert changed.status_code == 200, changed.text
    await runner.run_until_idle()
    record = await file_of(alice, uploaded["id"])
    assert (record["status"], record["error"], record["detected_content_type"]) == (
        "failed",
        "no",
        None,
    )
    [job] = await jobs_of(app, uploaded["id"])
    assert job.result == {"outcome": "skipped", "status": "failed"}


@LOCAL_ONLY
async def test_processing_is_queued_once_per_file(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient, runner: JobRunner
) -> None:
    uploaded = await land(alice, store_http, PNG, content_type="image/png")
    again = await alice.post(f"/api/v1/uploads/{uploaded['id']}/complete")
    assert again.status_code == 200
    async with app.state.sessionmaker() as session:
        record = await session.get(FileRecord, uuid.UUID(uploaded["id"]))
        assert record is not None
        await enqueue_processing(session, record, app.state.settings)
        await enqueue_processing(session, record, app.state.settings)
        await session.commit()
    assert len(await jobs_of(app, uploaded["id"])) == 1
    assert await runner.run_until_idle() == 1
    assert (await file_of(alice, uploaded["id"]))["status"] == "completed"
