"""``GET /s3/params``: a form POST to the store, and the landing job that confirms the file.

Nobody completes a form POST, and neither moto nor the local store (with its events off, as in
these tests) reports what it stored: the landing job finds the object and confirms it. The job
runner is driven by the test, on a clock the test moves.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI

from bigupload.jobs.models import JobStatus
from bigupload.jobs.runner import JobRunner
from bigupload.uppy.landing import FIRST_LOOK_SECONDS, GRACE_SECONDS, LANDING, attempts_for
from tests.conftest import Caller
from tests.support.clock import Clock
from tests.uppy.helpers import jobs_of, post_form, record_of

BODY = random.Random(9).randbytes(20_000)
LOCAL_ONLY = pytest.mark.parametrize("storage", ["local"], indirect=True)


async def params(caller: Caller, **query: str) -> dict[str, Any]:
    query.setdefault("filename", "clip.mp4")
    query.setdefault("type", "video/mp4")
    answer = await caller.get(f"/s3/params?{urlencode(query)}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def test_params_answer_a_form_and_record_the_file(
    app: FastAPI, alice: Caller, test_clock: Clock
) -> None:
    answer = await params(
        alice,
        filename="8c1e-holiday.mp4",
        **{"metadata[name]": "holiday.mp4", "metadata[album]": "2026", "other": "ignored"},
    )

    assert set(answer) == {"method", "url", "fields", "expires", "key"}
    assert (answer["method"], answer["expires"]) == ("POST", 900)
    assert answer["fields"]["key"] == answer["key"]
    assert answer["fields"]["Content-Type"] == "video/mp4"
    record = await record_of(app, answer["key"])
    assert (record.owner, record.filename, record.content_type) == (
        "alice",
        "holiday.mp4",
        "video/mp4",
    )
    assert (record.size, record.stored_size, record.status) == (None, None, "pending")
    assert record.multipart_upload_id is None
    assert record.user_metadata == {"name": "holiday.mp4", "album": "2026"}
    [job] = await jobs_of(app, record.id, LANDING)
    assert job.status == JobStatus.QUEUED.value
    assert job.dedupe_key == f"landing:{record.id}"
    assert job.run_at == test_clock() + timedelta(seconds=FIRST_LOOK_SECONDS)
    until = datetime.fromisoformat(job.payload["until"])
    assert until == test_clock() + timedelta(seconds=900 + GRACE_SECONDS)
    assert job.max_attempts == attempts_for(900 + GRACE_SECONDS)


async def test_the_landing_job_confirms_the_file_once_it_is_in_the_store(
    app: FastAPI,
    alice: Caller,
    store_http: httpx.AsyncClient,
    runner: JobRunner,
    test_clock: Clock,
) -> None:
    answer = await params(alice, **{"metadata[name]": "clip.mp4"})
    record = await record_of(app, answer["key"])
    assert await runner.run_until_idle() == 0  # not due yet
    test_clock.advance(FIRST_LOOK_SECONDS)
    assert await runner.run_until_idle() == 1  # nothing landed yet: again later
    [job] = await jobs_of(app, record.id, LANDING)
    assert (job.status, job.attempts) == (JobStatus.QUEUED.value, 1)
    assert job.last_error == "Retry: nothing has landed yet"

    posted = await post_form(store_http, answer, BODY)
    assert posted.status_code == 204, posted.text
    assert (await record_of(app, answer["key"])).status == "pending"
    test_clock.advance(10)
    assert await runner.run_until_idle() == 1

    record = await record_of(app, answer["key"])
    assert (record.status, record.size, record.stored_size) == ("uploaded", None, len(BODY))
    assert record.uploaded_at is not None
    [job] = await jobs_of(app, record.id, LANDING)
    assert job.status == JobStatus.DONE.value
    assert job.result == {"outcome": "confirmed", "status": "uploaded", "size": len(BODY)}
    [process] = await jobs_of(app, record.id, "process")  # processing is queued with it
    assert process.status == JobStatus.QUEUED.value
    file = (await alice.get(f"/api/v1/files/{record.id}")).json()
    assert (file["filename"], file["size"], file["stored_size"]) == ("clip.mp4", None, len(BODY))


async def test_the_landing_job_gives_up_once_the_form_has_expired(
    app: FastAPI, alice: Caller, runner: JobRunner, test_clock: Clock
) -> None:
    answer = await params(alice)
    record = await record_of(app, answer["key"])
    rounds = 0
    while (await jobs_of(app, record.id, LANDING))[0].status == JobStatus.QUEUED.value:
        rounds += 1
        assert rounds < 40, "the landing job never ended"
        test_clock.advance(61)
        await runner.run_until_idle()

    [job] = await jobs_of(app, record.id, LANDING)
    assert job.status == JobStatus.DONE.value
    assert job.result == {"outcome": "not_landed"}
    until = datetime.fromisoformat(job.payload["until"])
    # It looked until the form's expiry and a minute more had passed (with its jitter, a look
    # may be due only in the round after the next), then stopped.
    assert until <= test_clock() <= until + timedelta(seconds=2 * 61)
    assert job.attempts >= 10
    assert (await record_of(app, answer["key"])).status == "pending"  # for the sweeper


@LOCAL_ONLY
async def test_a_file_confirmed_by_the_api_ends_its_landing_job_at_once(
    app: FastAPI,
    alice: Caller,
    store_http: httpx.AsyncClient,
    runner: JobRunner,
    test_clock: Clock,
) -> None:
    answer = await params(alice)
    posted = await post_form(store_http, answer, BODY)
    assert posted.status_code == 204, posted.text
    record = await record_of(app, answer["key"])
    done = await alice.post(f"/api/v1/uploads/{record.id}/complete")
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["stored_size"]) == ("uploaded", len(BODY))

    test_clock.advance(FIRST_LOOK_SECONDS)
    assert await runner.run_until_idle() == 1

    [job] = await jobs_of(app, record.id, LANDING)
    assert (job.status, job.attempts) == (JobStatus.DONE.value, 1)
    assert job.result == {"outcome": "settled", "status": "uploaded"}


@LOCAL_ONLY
async def test_an_aborted_file_ends_its_landing_job_at_once(
    app: FastAPI, alice: Caller, runner: JobRunner, test_clock: Clock
) -> None:
    answer = await params(alice)
    record = await record_of(app, answer["key"])
    aborted = await alice.delete(f"/api/v1/uploads/{record.id}")
    assert aborted.status_code == 200, aborted.text

    test_clock.advance(FIRST_LOOK_SECONDS)
    assert await runner.run_until_idle() == 1

    [job] = await jobs_of(app, record.id, LANDING)
    assert job.result == {"outcome": "settled", "status": "aborted"}


class TestLimits:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"max_single_put_size": "10000B"}

    @LOCAL_ONLY
    async def test_the_form_refuses_a_file_over_the_single_upload_limit(
        self, app: FastAPI, alice: Caller, store_http: httpx.AsyncClient
    ) -> None:
        answer = await params(alice)
        posted = await post_form(store_http, answer, BODY)  # 20,000 bytes
        assert posted.status_code == 400, posted.text
        fits = await params(alice)
        posted = await post_form(store_http, fits, BODY[:10_000])
        assert posted.status_code == 204, posted.text

    @LOCAL_ONLY
    async def test_a_larger_object_that_landed_anyway_fails_the_file(
        self,
        app: FastAPI,
        alice: Caller,
        store_http: httpx.AsyncClient,
        runner: JobRunner,
        test_clock: Clock,
    ) -> None:
        answer = await params(alice)
        storage = app.state.storage
        put = storage.presign_put(  # a store that did not enforce the form's limit
            answer["key"],
            content_type="video/mp4",
            size=len(BODY),
            checksum_sha256=None,
            expires_in=600,
        )
        assert (await store_http.put(put.url, content=BODY, headers=put.headers)).status_code == 200
        test_clock.advance(FIRST_LOOK_SECONDS)
        assert await runner.run_until_idle() == 1

        record = await record_of(app, answer["key"])
        assert record.status == "failed"
        assert record.error == "the store holds 20000 bytes, more than the 10000-byte limit"
        assert await storage.stat(answer["key"]) is None
        [job] = await jobs_of(app, record.id, LANDING)
        assert job.result == {"outcome": "refused", "code": "file_too_large", "status": "failed"}


@LOCAL_ONLY
@pytest.mark.parametrize(
    "query",
    [
        {"metadata[]": "v"},
        {"metadata[" + "k" * 129 + "]": "v"},
        {f"metadata[k{n}]": "v" for n in range(33)},
        {"metadata[k]": "v" * 9000},
        {"metadata[name]": "a/b.mp4"},
        {"filename": ""},
        {"filename": "a\x00b.mp4"},
        {"type": "video"},
    ],
)
async def test_junk_in_the_query_is_422(alice: Caller, query: dict[str, str]) -> None:
    query = {"filename": "clip.mp4", "type": "video/mp4", **query}
    answer = await alice.get(f"/s3/params?{urlencode(query)}")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"
    assert answer.json()["message"] == answer.json()["error"]["message"]
    assert (await alice.get("/api/v1/files")).json()["items"] == []


@LOCAL_ONLY
async def test_a_file_of_no_type_is_octet_stream(app: FastAPI, alice: Caller) -> None:
    answer = await alice.get("/s3/params?filename=notes&type=")
    assert answer.status_code == 200, answer.text
    record = await record_of(app, answer.json()["key"])
    assert record.content_type == "application/octet-stream"
