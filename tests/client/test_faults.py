"""Failures on the way: the client retries what can be retried and the bytes arrive intact.

Faults come from the loopback proxy in front of the service and its store; which request gets
which fault depends only on the plan's seed and the request's identity, never on timing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bigupload import clock
from bigupload.client import RetryPolicy, TransferError
from tests.support.faults import FaultPlan, Record
from tests.support.harness import PART, Harness, MakeFile, sha256_of

SIZE = 6 * PART - 1000


class Waits:
    """A retry policy's sleep that records each wait and spends none of it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def statuses(harness: Harness, ident: str) -> list[int | None]:
    return [r.status for r in harness.proxy.snapshot() if r.identity == ident]


def test_503_and_429_are_retried_after_their_retry_after(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    harness.proxy.plan = FaultPlan(
        explicit={
            "POST /api/v1/uploads": ["503"],
            "POST /api/v1/uploads/{id}/parts": ["429"],
            "PUT part 1": ["503", "503"],
            "PUT part 4": ["429"],
            "POST /api/v1/uploads/{id}/complete": ["503"],
        },
        retry_after="7",
    )
    path, digest = make_file(SIZE)
    waits = Waits()
    with harness.client(retries=RetryPolicy(retries=3, sleep=waits)) as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert sha256_of(out) == digest
    assert waits.waits == [7.0] * 6
    assert statuses(harness, "PUT part 1") == [503, 503, 200]
    assert statuses(harness, "PUT part 4") == [429, 200]


def test_when_retries_run_out_the_last_error_is_raised(
    harness: Harness, make_file: MakeFile
) -> None:
    harness.proxy.plan = FaultPlan(explicit={"PUT part 2": ["503"] * 10}, retry_after="0")
    path, _ = make_file(SIZE)
    policy = RetryPolicy(retries=2, sleep=Waits())
    with harness.client(retries=policy) as client, pytest.raises(TransferError) as failed:
        client.upload(path)
    assert failed.value.status == 503
    assert "part 2" in str(failed.value)
    assert statuses(harness, "PUT part 2") == [503, 503, 503]
    assert len(harness.states()) == 1, "the upload can be resumed"


def test_dropped_connections_are_retried(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    """A share of the part uploads is cut off midway (nothing stored) or after the store took
    the part (its answer lost)."""
    harness.proxy.plan = FaultPlan(seed=3, share=0.5, kinds=("drop", "drop_after"))
    path, digest = make_file(SIZE)
    with harness.client(concurrency=3) as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert sha256_of(out) == digest
    injected = Counter(r.fault for r in harness.proxy.faults())
    assert injected["drop"] >= 1 and injected["drop_after"] >= 1, injected


def test_a_single_put_whose_answer_was_lost_is_not_sent_twice(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    """The store took the object but the answer was lost: the retry meets 412 (an upload URL
    stores one object, once) and the client completes what is stored."""
    harness.proxy.plan = FaultPlan(explicit={"PUT object": ["drop_after"]})
    path, digest = make_file(2 * 1024 * 1024)
    with harness.client() as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert statuses(harness, "PUT object") == [200, 412]
    assert sha256_of(out) == digest


def test_a_part_refused_for_its_checksum_is_sent_again(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    harness.proxy.plan = FaultPlan(explicit={"PUT part 2": ["corrupt"], "PUT part 5": ["corrupt"]})
    path, digest = make_file(SIZE)
    with harness.client() as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert sha256_of(out) == digest
    for ident in ("PUT part 2", "PUT part 5"):
        records = [r for r in harness.proxy.snapshot() if r.identity == ident]
        assert [(r.status, r.error_code) for r in records] == [
            (400, "checksum_mismatch"),
            (200, None),
        ]


def test_a_single_put_refused_for_its_checksum_is_sent_again(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    harness.proxy.plan = FaultPlan(explicit={"PUT object": ["corrupt"]})
    path, digest = make_file(1024 * 1024)
    with harness.client() as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert statuses(harness, "PUT object") == [400, 200]
    assert sha256_of(out) == digest


@pytest.fixture
def movable_clock() -> Iterator[list[timedelta]]:
    """The service's clock, ahead of real time by the list's one offset; put back after."""
    offset = [timedelta(0)]
    clock.set_clock(lambda: datetime.now(UTC) + offset[0])
    yield offset
    clock.set_clock(None)


def test_expired_part_urls_are_signed_again(
    harness: Harness, make_file: MakeFile, tmp_path: Path, movable_clock: list[timedelta]
) -> None:
    """Once the first batch of part URLs is signed, the service's clock jumps an hour ahead:
    the store refuses those URLs as expired, and the client signs them again."""

    def jump(record: Record) -> None:
        if record.identity == "POST /api/v1/uploads/{id}/parts" and record.status == 200:
            movable_clock[0] = timedelta(hours=1)

    harness.proxy.on_response = jump
    path, digest = make_file(SIZE)
    with harness.client(concurrency=2) as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert sha256_of(out) == digest
    expired = [r for r in harness.proxy.parts_sent() if r.error_code == "url_expired"]
    assert expired, "the first batch was used after its URLs expired"
    for record in expired:
        assert statuses(harness, record.identity)[-1] == 200
