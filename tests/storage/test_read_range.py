"""``Storage.read_range``: a ranged read of a stored object, the same on every adapter."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import httpx
import pytest

from bigupload.storage.base import ObjectNotFound, Storage, StorageUnreachable
from bigupload.storage.local import LocalStorage
from bigupload.storage.s3 import S3Storage, build_client
from tests.storage.test_contract import put
from tests.support.net import free_port

DATA = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes, every offset's byte is known
KeyMaker = Callable[..., str]


@pytest.fixture
async def stored_key(store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker) -> str:
    key = new_key()
    await put(store, http_for_store, key, DATA)
    return key


@pytest.mark.parametrize(
    ("start", "length"),
    [(0, 64), (0, 1), (1000, 4096), (len(DATA) - 4, 4), (0, len(DATA))],
)
async def test_a_range_inside_the_object_is_exactly_its_bytes(
    store: Storage, stored_key: str, start: int, length: int
) -> None:
    assert await store.read_range(stored_key, start, length) == DATA[start : start + length]


async def test_a_range_over_the_end_answers_what_there_is(store: Storage, stored_key: str) -> None:
    assert await store.read_range(stored_key, len(DATA) - 10, 64 * 1024) == DATA[-10:]
    assert await store.read_range(stored_key, 0, 10 * len(DATA)) == DATA


async def test_from_the_end_on_there_is_nothing(store: Storage, stored_key: str) -> None:
    assert await store.read_range(stored_key, len(DATA), 10) == b""
    assert await store.read_range(stored_key, len(DATA) + 1000, 10) == b""


async def test_no_bytes_asked_no_bytes_answered(store: Storage, stored_key: str) -> None:
    assert await store.read_range(stored_key, 5, 0) == b""


async def test_an_empty_object_reads_as_nothing(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key("empty")
    await put(store, http_for_store, key, b"")
    assert await store.read_range(key, 0, 64) == b""


async def test_a_missing_object_is_object_not_found(store: Storage, new_key: KeyMaker) -> None:
    key = new_key("missing")
    with pytest.raises(ObjectNotFound):
        await store.read_range(key, 0, 64)
    with pytest.raises(ObjectNotFound):
        await store.read_range(key, 0, 0)


async def test_a_negative_range_is_refused(store: Storage, stored_key: str) -> None:
    with pytest.raises(ValueError, match="range"):
        await store.read_range(stored_key, -1, 10)
    with pytest.raises(ValueError, match="range"):
        await store.read_range(stored_key, 0, -1)


async def test_an_unreachable_store_raises_storage_unreachable(local_store: LocalStorage) -> None:
    client = build_client(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    s3 = S3Storage(client, "nowhere")
    try:
        with pytest.raises(StorageUnreachable):
            await s3.read_range("uploads/a/2026/11/b", 0, 64)
    finally:
        await s3.close()
    shutil.rmtree(local_store.root)
    with pytest.raises(StorageUnreachable):
        await local_store.read_range("uploads/a/2026/11/b", 0, 64)
