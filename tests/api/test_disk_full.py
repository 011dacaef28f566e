"""The local store's disk full (a real 8 MiB tmpfs): uploads answer 507 ``insufficient_storage``
with ``Retry-After``, nothing is left behind, the file stays ``pending`` so the same upload works
once space is freed, and readiness says the store is full."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bigupload.storage.base import Storage
from bigupload.storage.local import LocalStorage
from tests.api.helpers import send, start
from tests.conftest import SECRET, TEST_BASE_URL, Caller
from tests.support.tmpfs import MiB, fill, small_tmpfs

FLOOR = 1 * MiB


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as mounted:
        yield mounted


@pytest.fixture
def storage(disk: Path) -> Storage:
    return LocalStorage(
        disk / "store", public_url=TEST_BASE_URL, secret=SECRET, min_free_space=FLOOR
    )


def leftovers(store: LocalStorage) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


async def test_a_put_on_a_full_disk_is_507_and_can_be_sent_again(
    alice: Caller, storage: LocalStorage, disk: Path
) -> None:
    data = b"v" * (3 * MiB)
    ticket = await start(alice, data)
    filler = disk / "filler"
    fill(filler, leave=2 * MiB)  # room for less than the file

    refused = await send(alice.http, ticket, data)
    assert refused.status_code == 507, refused.text
    assert refused.json()["error"]["code"] == "insufficient_storage"
    assert refused.headers["retry-after"] == "60"
    assert leftovers(storage) == []  # no temp file, no object, no metadata
    file = await alice.get(f"/api/v1/files/{ticket['id']}")
    assert file.json()["status"] == "pending"
    early = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert early.status_code == 409, early.text

    filler.unlink()
    again = await send(alice.http, ticket, data)  # the same URL, once space is freed
    assert again.status_code == 200, again.text
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "uploaded"


async def test_readiness_reports_a_full_store(
    alice: Caller, storage: LocalStorage, disk: Path
) -> None:
    ready = await alice.http.get("/health/ready")
    assert ready.status_code == 200, ready.text
    filler = disk / "filler"
    fill(filler, leave=FLOOR // 2)  # below the floor
    below = await alice.http.get("/health/ready")
    assert below.status_code == 503
    assert below.json()["checks"]["database"] == "ok"
    assert below.json()["checks"]["storage"].startswith("error: the local store's disk is full")
    filler.unlink()
    fill(filler)  # up to the last byte
    full = await alice.http.get("/health/ready")
    assert full.status_code == 503
    assert "0 bytes free" in full.json()["checks"]["storage"]
    filler.unlink()
    assert (await alice.http.get("/health/ready")).status_code == 200
