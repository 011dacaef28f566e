"""Which multipart uploads the sweeper aborts: the rule alone, on dates the stores really report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bigupload.expiry.sweeper import UploadOwner, begun_by, duration, should_abort
from bigupload.files.status import FileStatus
from bigupload.storage.base import MultipartUpload

NOW = datetime(2030, 3, 15, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(hours=1)
OURS = "uploads/alice/2030/03/0b8d6f7e-4f7c-4f61-9d8e-2b0c1d3a4e5f"
OURS_LAST_YEAR = "uploads/alice/2029/12/0b8d6f7e-4f7c-4f61-9d8e-2b0c1d3a4e5f"
MOTO_DATE = datetime(2010, 11, 10, 20, 48, 33, tzinfo=UTC)  # moto's date for every upload


def upload(key: str, initiated: datetime | None, upload_id: str = "u1") -> MultipartUpload:
    return MultipartUpload(key=key, upload_id=upload_id, initiated=initiated)


def test_the_store_date_is_believed_when_the_key_allows_it() -> None:
    when = datetime(2030, 3, 2, tzinfo=UTC)
    assert begun_by(upload(OURS, when)) == when
    assert begun_by(upload("uploads/other.bin", MOTO_DATE)) == MOTO_DATE
    assert begun_by(upload("uploads/other.bin", None)) is None


def test_a_date_before_the_keys_month_is_bounded_by_the_month() -> None:
    assert begun_by(upload(OURS, MOTO_DATE)) == datetime(2030, 4, 1, tzinfo=UTC)
    assert begun_by(upload(OURS, None)) == datetime(2030, 4, 1, tzinfo=UTC)
    assert begun_by(upload(OURS_LAST_YEAR, None)) == datetime(2030, 1, 1, tzinfo=UTC)
    naive = datetime(2030, 3, 2)  # a store answering without a zone means UTC
    assert begun_by(upload(OURS, naive)) == naive.replace(tzinfo=UTC)


def test_a_pending_files_own_upload_is_never_aborted() -> None:
    owner = UploadOwner(FileStatus.PENDING, "u1")
    for initiated in (MOTO_DATE, None, NOW - timedelta(days=400)):
        for key in (OURS, OURS_LAST_YEAR, "uploads/other.bin"):
            assert not should_abort(upload(key, initiated), owner, CUTOFF)


@pytest.mark.parametrize("status", [FileStatus.EXPIRED, FileStatus.ABORTED, FileStatus.FAILED])
def test_a_finished_files_upload_is_aborted_at_once_unless_its_purge_will(
    status: FileStatus,
) -> None:
    fresh = upload(OURS, NOW)
    assert should_abort(fresh, UploadOwner(status, "u1"), CUTOFF)
    assert not should_abort(fresh, UploadOwner(status, "u1", purging=True), CUTOFF)


def test_uploads_no_record_owns_are_aborted_once_old() -> None:
    old = NOW - timedelta(hours=2)
    assert should_abort(upload(OURS, old), None, CUTOFF)
    assert not should_abort(upload(OURS, NOW - timedelta(minutes=5)), None, CUTOFF)
    # A key bigupload never made, dated by the store.
    assert should_abort(upload("uploads/other.bin", old), None, CUTOFF)
    assert should_abort(upload("uploads/other.bin", MOTO_DATE), None, CUTOFF)
    # Undated, and no key month to bound it: kept, since nothing says it is old.
    assert not should_abort(upload("uploads/other.bin", None), None, CUTOFF)
    # moto's date on a key of this month: too young to tell; of last year's: old.
    assert not should_abort(upload(OURS, MOTO_DATE), None, CUTOFF)
    assert should_abort(upload(OURS_LAST_YEAR, MOTO_DATE), None, CUTOFF)


def test_another_upload_under_a_files_key_is_judged_by_its_age() -> None:
    for status in (FileStatus.PENDING, FileStatus.COMPLETED, FileStatus.EXPIRED):
        owner = UploadOwner(status, "the-files-own")
        assert should_abort(upload(OURS, NOW - timedelta(hours=2), "stray"), owner, CUTOFF)
        assert not should_abort(upload(OURS, NOW, "stray"), owner, CUTOFF)


def test_durations_read_as_people_write_them() -> None:
    assert duration(7 * 86400) == "7 days"
    assert duration(86400) == "1 day"
    assert duration(3600) == "1 hour"
    assert duration(5400) == "90 minutes"
    assert duration(600) == "10 minutes"
    assert duration(61) == "61 seconds"
