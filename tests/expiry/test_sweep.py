"""The sweeper on a real registry and a real store: stale uploads expire and lose their bytes,
forgotten multipart uploads are aborted, and nothing whole is touched.

Runs on the local store and on moto over HTTP, each on SQLite and PostgreSQL. moto reports the
same 2010 date for every multipart upload, which is what makes it the store on which a young
upload's parts could be taken for an old one's.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest

from bigupload import clock
from bigupload.expiry import sweeper
from bigupload.expiry.purge import enqueue_purge
from bigupload.files.models import FileRecord
from bigupload.storage.base import UploadNotFound
from bigupload.storage.s3 import S3Storage
from tests.conftest import Caller
from tests.expiry.conftest import PENDING_EXPIRY, Harness
from tests.expiry.helpers import (
    LAST_PART,
    Flaky,
    data,
    part,
    parts_of,
    pending_parts,
    pending_put,
    status_of,
    upload_ids,
    whole,
)
from tests.support.clock import Clock
from tests.support.statements import statements_of

EXPIRED_REASON = "not uploaded within 1 hour"
#: Past the pending limit and past the end of the month any key was made in, so that even an
#: upload whose store reports no usable date counts as old.
LONG_AFTER = {"days": 40, "seconds": PENDING_EXPIRY}


async def test_stale_uploads_expire_and_their_bytes_and_parts_are_freed(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    stale_put = await pending_put(alice, store_http, data(1))
    stale_parts = await pending_parts(alice, store_http)
    assert [p.part_number for p in await parts_of(harness.storage, stale_parts)] == [3]

    test_clock.advance(seconds=PENDING_EXPIRY - 1)
    young_put = await pending_put(alice, store_http, data(2))
    young_parts = await pending_parts(alice, store_http)

    test_clock.advance(seconds=2)  # the first two are now past the limit, the others are not
    report = await harness.sweep()
    assert (report.expired_pending, report.expired_unconfirmed) == (2, 0)
    assert report.orphan_uploads_aborted == 0
    assert report.errors == []

    for ticket in (stale_put, stale_parts):
        assert await status_of(alice, ticket["id"]) == "expired"
        assert await harness.events(ticket["id"]) == [
            (None, "pending", None),
            ("pending", "expired", EXPIRED_REASON),
        ]
        record = await harness.record(ticket["id"])
        assert record.error == EXPIRED_REASON
        assert record.expires_at == test_clock.current
    purges = await harness.jobs()
    assert sorted(str(j.file_id) for j in purges) == sorted([stale_put["id"], stale_parts["id"]])
    assert {j.dedupe_key for j in purges} == {f"purge:{j.file_id}" for j in purges}

    # The bytes stay until the purge jobs run: the records go first.
    assert await harness.stored_bytes(stale_put["key"]) == data(1)
    assert await harness.run_purges() == 2
    assert await harness.stored_bytes(stale_put["key"]) is None
    with pytest.raises(UploadNotFound):
        await parts_of(harness.storage, stale_parts)
    assert stale_parts["upload_id"] not in await upload_ids(harness.storage)
    assert {j.status for j in await harness.jobs()} == {"done"}

    # The young ones keep everything.
    for ticket in (young_put, young_parts):
        assert await status_of(alice, ticket["id"]) == "pending"
        assert [e[1] for e in await harness.events(ticket["id"])] == ["pending"]
    assert await harness.stored_bytes(young_put["key"]) == data(2)
    assert [p.part_number for p in await parts_of(harness.storage, young_parts)] == [3]

    # An expired upload says so to its uploader.
    completed = await alice.post(f"/api/v1/uploads/{stale_put['id']}/complete")
    assert completed.status_code == 409
    assert completed.json()["error"]["code"] == "upload_expired"
    assert EXPIRED_REASON in completed.json()["error"]["message"]


async def test_whole_and_failed_files_are_never_touched(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    kept = {}
    done = await whole(alice, store_http, data(3))
    kept[done["id"]] = ("uploaded", done["key"], data(3))

    completing = await whole(alice, store_http, data(4))
    for status in ("processing", "completed"):
        moved = await alice.put(f"/api/v1/files/{completing['id']}/status", json={"status": status})
        assert moved.status_code == 200, moved.text
    kept[completing["id"]] = ("completed", completing["key"], data(4))

    failing = await whole(alice, store_http, data(5))
    failed = await alice.put(
        f"/api/v1/files/{failing['id']}/status", json={"status": "failed", "reason": "bad scan"}
    )
    assert failed.status_code == 200, failed.text
    kept[failing["id"]] = ("failed", failing["key"], data(5))

    test_clock.advance(**LONG_AFTER)
    report = await harness.sweep()
    assert (report.expired_pending, report.expired_unconfirmed) == (0, 0)
    assert report.orphan_uploads_aborted == 0
    assert await harness.jobs() == []
    for file_id, (status, key, body) in kept.items():
        assert await status_of(alice, file_id) == status
        assert await harness.stored_bytes(key) == body


async def test_sweeping_again_changes_nothing(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    tickets = [
        await pending_put(alice, store_http, data(6)),
        await pending_parts(alice, store_http),
    ]
    test_clock.advance(seconds=PENDING_EXPIRY + 1)
    first = await harness.sweep()
    assert first.expired_pending == 2
    jobs_before = [(j.id, j.status) for j in await harness.jobs()]

    again = await harness.sweep()
    assert (again.expired_pending, again.expired_unconfirmed, again.orphan_uploads_aborted) == (
        0,
        0,
        0,
    )
    assert again.errors == []
    assert [(j.id, j.status) for j in await harness.jobs()] == jobs_before
    for ticket in tickets:
        assert [e[1] for e in await harness.events(ticket["id"])] == ["pending", "expired"]

    # Nor after the purges, when the store no longer holds the multipart upload.
    assert await harness.run_purges() == 2
    third = await harness.sweep()
    assert (third.expired_pending, third.orphan_uploads_aborted, third.errors) == (0, 0, [])


async def test_racing_sweeps_expire_each_file_once(
    test_clock: Clock,
    alice: Caller,
    harness: Harness,
    store_http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sweeper, "BATCH", 2)  # several transactions each, interleaved
    tickets = [await pending_put(alice, store_http, data(10 + n)) for n in range(6)]
    tickets.append(await pending_parts(alice, store_http))
    test_clock.advance(seconds=PENDING_EXPIRY + 1)

    reports = await asyncio.gather(harness.sweep(), harness.sweep(), harness.sweep())
    assert sum(r.expired_pending for r in reports) == len(tickets)
    assert all(r.errors == [] for r in reports)
    for ticket in tickets:
        expired = [e for e in await harness.events(ticket["id"]) if e[1] == "expired"]
        assert expired == [("pending", "expired", EXPIRED_REASON)]
    purges = await harness.jobs()
    assert sorted(str(j.file_id) for j in purges) == sorted(t["id"] for t in tickets)

    assert await harness.run_purges() == len(tickets)
    for ticket in tickets:
        assert await harness.storage.stat(ticket["key"]) is None
    assert await upload_ids(harness.storage) == set()


async def test_a_young_multipart_upload_keeps_its_parts_whatever_date_the_store_reports(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    ticket = await pending_parts(alice, store_http)
    test_clock.advance(seconds=PENDING_EXPIRY - 1)
    (listed,) = await harness.storage.list_multipart_uploads("uploads/")
    assert listed.upload_id == ticket["upload_id"]
    cutoff = clock.now() - timedelta(seconds=PENDING_EXPIRY)
    if isinstance(harness.storage, S3Storage):
        # moto's date for every upload: the store alone would call this upload ancient.
        assert listed.initiated is not None and listed.initiated < cutoff
    else:
        assert listed.initiated is not None and listed.initiated > cutoff

    report = await harness.sweep()
    assert (report.expired_pending, report.orphan_uploads_aborted, report.errors) == (0, 0, [])
    assert await status_of(alice, ticket["id"]) == "pending"
    assert [p.part_number for p in await parts_of(harness.storage, ticket)] == [3]


async def test_orphan_uploads_no_record_knows_are_aborted_once_old(
    test_clock: Clock, alice: Caller, harness: Harness
) -> None:
    store = harness.storage
    now = clock.now()
    ours = f"uploads/ghost/{now:%Y}/{now:%m}/{uuid.uuid4()}"  # a crash before its record
    ours_id = await store.create_multipart(ours, content_type="video/mp4")
    (signed,) = store.presign_parts(ours, ours_id, [part(1, len(LAST_PART))], expires_in=300)
    put = await harness.http.put(signed.url, content=LAST_PART, headers=signed.headers)
    assert put.status_code == 200, put.text

    young = await harness.sweep()
    assert (young.orphan_uploads_aborted, young.errors) == (0, [])
    assert await upload_ids(store) == {ours_id}

    test_clock.advance(**LONG_AFTER)
    foreign = "uploads/not-ours.bin"  # a key bigupload never makes
    foreign_id = await store.create_multipart(foreign, content_type="application/octet-stream")
    outside = "elsewhere/keep.bin"  # outside bigupload's prefix: never looked at
    outside_id = await store.create_multipart(outside, content_type="application/octet-stream")
    test_clock.advance(**LONG_AFTER)

    old = await harness.sweep()
    assert (old.orphan_uploads_aborted, old.errors) == (2, [])
    assert (old.expired_pending, old.expired_unconfirmed) == (0, 0)
    assert await upload_ids(store) == set()
    for key, upload_id in ((ours, ours_id), (foreign, foreign_id)):
        with pytest.raises(UploadNotFound):
            await store.list_parts(key, upload_id)
    assert [u.upload_id for u in await store.list_multipart_uploads("elsewhere/")] == [outside_id]
    await store.abort_multipart(outside, outside_id)

    again = await harness.sweep()
    assert (again.orphan_uploads_aborted, again.errors) == (0, [])


async def test_the_upload_left_by_an_aborted_file_is_freed_by_its_purge(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    """An abort whose store call failed leaves parts behind: its purge job frees them (the
    sweep leaves them to it)."""
    ticket = await pending_parts(alice, store_http)
    flaky = Flaky(harness.storage)
    flaky.down = True
    harness.app.state.storage = flaky
    accepted = await alice.delete(f"/api/v1/uploads/{ticket['id']}")
    assert (accepted.status_code, accepted.json()["cleanup_pending"]) == (202, True)
    harness.app.state.storage = harness.storage
    assert await status_of(alice, ticket["id"]) == "aborted"
    assert [p.part_number for p in await parts_of(harness.storage, ticket)] == [3]

    report = await harness.sweep()
    assert (report.orphan_uploads_aborted, report.expired_pending, report.errors) == (0, 0, [])
    test_clock.advance(seconds=60)
    assert await harness.run_purges() == 1
    with pytest.raises(UploadNotFound):
        await parts_of(harness.storage, ticket)


async def test_a_purge_waits_for_the_store_and_the_file_stays_expired(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    put = await pending_put(alice, store_http, data(20))
    parts = await pending_parts(alice, store_http)
    test_clock.advance(seconds=PENDING_EXPIRY + 1)
    assert (await harness.sweep()).expired_pending == 2

    flaky = Flaky(harness.storage)
    flaky.down = True
    assert await harness.run_purges(flaky) == 2
    for job in await harness.jobs():
        assert (job.status, job.attempts) == ("queued", 1)
        assert job.last_error is not None and "unreachable" in job.last_error
        assert job.run_at > clock.now()
    for ticket in (put, parts):
        assert await status_of(alice, ticket["id"]) == "expired"
    assert await harness.stored_bytes(put["key"]) == data(20)
    assert [p.part_number for p in await parts_of(harness.storage, parts)] == [3]

    # Nothing is due until the backoff has passed; then the store is back.
    assert await harness.run_purges(flaky) == 0
    flaky.down = False
    test_clock.advance(hours=2)
    assert await harness.run_purges(flaky) == 2
    assert {(j.status, j.attempts) for j in await harness.jobs()} == {("done", 2)}
    assert await harness.stored_bytes(put["key"]) is None
    with pytest.raises(UploadNotFound):
        await parts_of(harness.storage, parts)
    for ticket in (put, parts):
        assert [e[1] for e in await harness.events(ticket["id"])] == ["pending", "expired"]


async def test_an_unreachable_store_is_reported_and_records_still_expire(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    ticket = await pending_put(alice, store_http, data(30))
    test_clock.advance(seconds=PENDING_EXPIRY + 1)
    flaky = Flaky(harness.storage)
    flaky.down = True
    report = await harness.sweep(flaky)
    assert report.store_unreachable is True
    assert report.expired_pending == 1
    assert len(report.errors) == 1
    assert report.errors[0].startswith("could not list multipart uploads: ")
    assert await status_of(alice, ticket["id"]) == "expired"
    assert [str(j.file_id) for j in await harness.jobs()] == [ticket["id"]]


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_the_scheduled_sweep_runs_in_one_process_at_a_time(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    from bigupload.expiry.sweeper import SWEEP, SweepReport
    from bigupload.jobs.runner import JobRunner

    settings = harness.app.state.settings
    assert SWEEP.exclusive
    assert SWEEP.interval(settings) == settings.sweep_interval_seconds

    def runner(worker: str) -> JobRunner:
        return JobRunner(
            sessionmaker=harness.app.state.sessionmaker,
            storage=harness.storage,
            settings=settings,
            kinds={},
            periodics=[SWEEP],
            worker_id=worker,
        )

    one, two = runner("one"), runner("two")
    first = await pending_put(alice, store_http, data(70))
    test_clock.advance(seconds=100)
    second = await pending_put(alice, store_http, data(71))
    test_clock.advance(seconds=PENDING_EXPIRY + 1 - 100)
    report = await one.run_periodic("sweep")
    assert isinstance(report, SweepReport) and report.expired_pending == 1
    assert await status_of(alice, first["id"]) == "expired"

    # Within the interval the other process leaves the work to the lease's holder.
    test_clock.advance(seconds=101)
    assert settings.sweep_interval_seconds > 101
    assert await two.run_periodic("sweep") is None
    assert await status_of(alice, second["id"]) == "pending"

    test_clock.advance(seconds=settings.sweep_interval_seconds)
    later = await two.run_periodic("sweep")
    assert isinstance(later, SweepReport) and later.expired_pending == 1
    assert await status_of(alice, second["id"]) == "expired"


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_a_purge_never_removes_a_file_that_is_not_expired(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    file = await whole(alice, store_http, data(80))
    async with harness.app.state.sessionmaker() as session, session.begin():
        record = await session.get(FileRecord, uuid.UUID(file["id"]))
        assert record is not None
        assert await enqueue_purge(session, record, harness.app.state.settings)
        assert not await enqueue_purge(session, record, harness.app.state.settings)
    assert await harness.run_purges() == 1
    (job,) = await harness.jobs()
    assert job.status == "dead"
    assert job.last_error == "GiveUp: the file is uploaded: its bytes are not purged"
    assert await harness.stored_bytes(file["key"]) == data(80)
    assert await status_of(alice, file["id"]) == "uploaded"


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_a_batch_of_files_expires_in_a_few_statements_not_a_few_per_file(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    tickets = [await pending_put(alice, store_http, data(70 + n)) for n in range(5)]
    test_clock.advance(seconds=PENDING_EXPIRY + 1)
    with statements_of(harness.app.state.engine) as seen:
        report = await harness.sweep()
    assert report.expired_pending == 5
    expiring = [t for t in seen.transactions if any(s.startswith("UPDATE files") for s in t)]
    assert len(expiring) == 1
    # The batch read, one UPDATE for the status read, the events, the purge jobs; on
    # PostgreSQL one wake-up for the runners besides (jobs and events, in one NOTIFY).
    notifies = [s for s in expiring[0] if s.startswith("SELECT pg_notify")]
    postgres = harness.app.state.engine.dialect.name == "postgresql"
    assert len(notifies) == (1 if postgres else 0)
    assert len(expiring[0]) - len(notifies) == 4
    assert len([s for s in expiring[0] if s.startswith("INSERT INTO jobs")]) == 1
    assert sorted(str(j.file_id) for j in await harness.jobs()) == sorted(t["id"] for t in tickets)
    for ticket in tickets:
        assert [e[1] for e in await harness.events(ticket["id"])] == ["pending", "expired"]


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_the_sweep_prunes_finished_jobs_and_dispatched_events_past_retention(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    from bigupload.jobs.kinds import PeriodicContext
    from bigupload.notifications.dispatch import dispatch_round

    tickets = [await pending_put(alice, store_http, data(80 + n)) for n in range(3)]
    test_clock.advance(seconds=PENDING_EXPIRY + 1)
    assert (await harness.sweep()).expired_pending == 3
    assert await harness.run_purges() == 3
    app = harness.app
    context = PeriodicContext("t", app.state.settings, harness.storage, app.state.sessionmaker)
    assert await dispatch_round(context) == 6  # pending and expired, of each file

    test_clock.advance(days=8)  # past the jobs' retention (7 days), not the events' (30)
    week = await harness.sweep()
    assert (week.jobs_pruned, week.events_pruned) == (2, 0)  # the newest job is always kept
    assert "pruned 2 finished job(s) and 0 file event(s)" in week.summary()
    assert len(await harness.jobs()) == 1

    test_clock.advance(days=30)
    month = await harness.sweep()
    assert (month.jobs_pruned, month.events_pruned) == (0, 5)  # the newest event is kept
    remaining = [e for t in tickets for e in await harness.events(t["id"])]
    assert [e[1] for e in remaining] == ["expired"]
