"""The local store on a disk that fills up (a real 8 MiB tmpfs): every write that finds no room
is :class:`StorageFull` (507 ``insufficient_storage`` over HTTP), undoes what it did, and can be
made again once space is freed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bigupload.storage.base import CompletedPart, PartToSign, StorageFull
from bigupload.storage.local import LocalStorage
from tests.conftest import SECRET, TEST_BASE_URL
from tests.storage.helpers import http_for, send
from tests.support.tmpfs import MiB, fill, small_tmpfs

KEY = "uploads/alice/2026/11/full"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as mounted:
        yield mounted


@pytest.fixture
def store(disk: Path) -> LocalStorage:
    return LocalStorage(disk / "store", public_url=TEST_BASE_URL, secret=SECRET)


@pytest.fixture
async def http(store: LocalStorage) -> AsyncIterator[httpx.AsyncClient]:
    async with http_for(store) as client:
        yield client


def in_tmp(store: LocalStorage) -> list[Path]:
    return list(store.tmp.iterdir())


def assert_full(response: httpx.Response) -> None:
    assert response.status_code == 507, response.text
    assert response.json()["error"]["code"] == "insufficient_storage"
    assert response.headers["retry-after"] == "60"


async def test_a_part_that_does_not_fit_keeps_the_earlier_one(
    store: LocalStorage, http: httpx.AsyncClient, disk: Path
) -> None:
    upload_id = await store.create_multipart(KEY, content_type="video/mp4")
    size = 2 * MiB
    [part] = store.presign_parts(KEY, upload_id, [PartToSign(1, size)], expires_in=60)
    first = await send(http, part, b"a" * size)
    assert first.status_code == 200, first.text
    filler = disk / "filler"
    fill(filler, leave=MiB)
    assert_full(await send(http, part, b"b" * size))
    assert [p.etag for p in await store.list_parts(KEY, upload_id)] == [first.headers["etag"]]
    assert in_tmp(store) == []
    filler.unlink()
    again = await send(http, part, b"b" * size)
    assert again.status_code == 200, again.text
    assert [p.etag for p in await store.list_parts(KEY, upload_id)] == [again.headers["etag"]]


async def test_a_join_that_does_not_fit_keeps_the_upload(
    store: LocalStorage, http: httpx.AsyncClient, disk: Path
) -> None:
    upload_id = await store.create_multipart(KEY, content_type="video/mp4")
    sizes = [5 * MiB, MiB]  # joined, 6 MiB more: the disk has 8 MiB
    signed = store.presign_parts(
        KEY, upload_id, [PartToSign(n, s) for n, s in enumerate(sizes, 1)], expires_in=60
    )
    named = []
    for number, (request, size) in enumerate(zip(signed, sizes, strict=True), 1):
        answer = await send(http, request, bytes([number]) * size)
        assert answer.status_code == 200, answer.text
        named.append(CompletedPart(number, answer.headers["etag"]))
    with pytest.raises(StorageFull):
        await store.complete_multipart(KEY, upload_id, named)
    assert in_tmp(store) == []
    assert await store.stat(KEY) is None
    assert [p.part_number for p in await store.list_parts(KEY, upload_id)] == [1, 2]
    assert [u.upload_id for u in await store.list_multipart_uploads()] == [upload_id]


async def test_beginning_an_upload_on_a_full_disk_leaves_nothing(
    store: LocalStorage, disk: Path
) -> None:
    fill(disk / "filler")
    with pytest.raises(StorageFull):
        await store.create_multipart(KEY, content_type="video/mp4")
    assert in_tmp(store) == []
    assert await store.list_multipart_uploads() == []


async def test_a_form_upload_that_does_not_fit_is_507(
    store: LocalStorage, http: httpx.AsyncClient, disk: Path
) -> None:
    post = store.presign_post(KEY, content_type="text/plain", max_size=4 * MiB, expires_in=60)
    fill(disk / "filler", leave=MiB)
    answer = await http.post(
        post.url, data=post.fields, files={"file": ("a.txt", b"x" * (3 * MiB), "text/plain")}
    )
    assert_full(answer)
    assert in_tmp(store) == []
    assert await store.stat(KEY) is None


async def test_check_reports_a_disk_below_its_floor(store: LocalStorage, disk: Path) -> None:
    await store.check()
    store.min_free_space = 4 * MiB
    fill(disk / "filler", leave=3 * MiB)
    with pytest.raises(StorageFull, match="below the floor of 4194304"):
        await store.check()
    store.min_free_space = 0
    await store.check()  # some space is left: not full
    fill(disk / "more")
    with pytest.raises(StorageFull, match=" 0 bytes free"):
        await store.check()
