"""The S3 adapter's multipart uploads: what the shared contract does not cover.

Pagination of ListParts (1,000 parts a page) and ListMultipartUploads, S3's error codes mapped
to the port's errors on moto and on LocalStack (whose quirks differ: moto answers 500 to a
CompleteMultipartUpload of an aborted upload, and completes a completed one again), the
multipart ETag, and an unreachable store.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from bigupload.storage.base import (
    MIN_PART_SIZE,
    CompletedPart,
    PartsRejected,
    PartToSign,
    StorageUnreachable,
    UploadNotFound,
)
from bigupload.storage.s3 import S3Storage, build_client
from tests.storage.helpers import send, sha256
from tests.support.net import free_port

KeyMaker = Callable[..., str]
BIG = b"B" * MIN_PART_SIZE
TAIL = b"the last part"

S3_ADAPTERS = ["s3-moto", pytest.param("s3-strict", marks=pytest.mark.strict_s3)]
_FIXTURES = {"s3-moto": "moto_store", "s3-strict": "strict_store"}


@pytest.fixture(params=S3_ADAPTERS)
async def s3(request: pytest.FixtureRequest) -> AsyncIterator[S3Storage]:
    store: S3Storage = request.getfixturevalue(_FIXTURES[request.param])
    yield store
    await store.close()


@pytest.fixture
def s3_name(request: pytest.FixtureRequest) -> str:
    name: str = request.node.callspec.params["s3"]
    return name


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def upload_parts(
    store: S3Storage,
    http: httpx.AsyncClient,
    key: str,
    upload_id: str,
    bodies: dict[int, bytes],
    *,
    checksum: bool = False,
) -> list[CompletedPart]:
    """PUT each body through its presigned URL; answer the parts to complete with."""
    parts = [PartToSign(n, len(b), sha256(b) if checksum else None) for n, b in bodies.items()]
    requests = store.presign_parts(key, upload_id, parts, expires_in=600)
    completed = []
    for part, request in zip(parts, requests, strict=True):
        response = await send(http, request, bodies[part.part_number])
        assert response.status_code == 200, response.text
        digest = request.headers.get("x-amz-checksum-sha256")
        completed.append(CompletedPart(part.part_number, response.headers["etag"], digest))
    return completed


def multipart_etag(*bodies: bytes) -> str:
    """S3's ETag of a multipart object: the MD5 of the parts' MD5s, and the number of parts."""
    joined = b"".join(hashlib.md5(body).digest() for body in bodies)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(bodies)}"'


# -- pagination -------------------------------------------------------------------------------


async def test_list_parts_reads_every_page_past_1000_parts(
    moto_store: S3Storage, http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    """1,234 tiny parts (a part below 5 MiB is refused only at completion): two pages."""
    key = new_key()
    upload_id = await moto_store.create_multipart(key, content_type="text/plain")
    bodies = {n: b"%d" % n for n in range(1, 1235)}
    parts = [PartToSign(n, len(body)) for n, body in bodies.items()]
    requests = moto_store.presign_parts(key, upload_id, parts, expires_in=600)
    etags = {}
    # one by one, blocking: moto runs in this process, and is fastest so (~3 ms a part)
    with httpx.Client() as client:
        for part, request in zip(parts, requests, strict=True):
            response = client.put(request.url, content=bodies[part.part_number])
            assert response.status_code == 200, response.text
            etags[part.part_number] = response.headers["etag"]
    await upload_parts(moto_store, http, key, upload_id, {7: b"seven, again"})  # replaces part 7

    stored = await moto_store.list_parts(key, upload_id)
    assert [p.part_number for p in stored] == list(range(1, 1235))
    assert [p.size for p in stored] == [
        len(b"seven, again") if n == 7 else len(body) for n, body in bodies.items()
    ]
    etags[7] = f'"{hashlib.md5(b"seven, again").hexdigest()}"'
    assert {p.part_number: p.etag for p in stored} == etags
    assert all(p.etag.startswith('"') and p.last_modified is not None for p in stored)
    await moto_store.abort_multipart(key, upload_id)


async def test_uploads_in_progress_are_listed_by_prefix_oldest_first(
    s3: S3Storage, s3_name: str, new_key: KeyMaker
) -> None:
    base = new_key("dir")
    first = await s3.create_multipart(f"{base}/b", content_type="text/plain")
    await asyncio.sleep(1.1)  # S3 records initiation to the second
    second = await s3.create_multipart(f"{base}/a", content_type="text/plain")
    third = await s3.create_multipart(f"{base}/a", content_type="text/plain")
    aborted = await s3.create_multipart(f"{base}/c", content_type="text/plain")
    await s3.abort_multipart(f"{base}/c", aborted)
    await s3.create_multipart(new_key("elsewhere"), content_type="text/plain")

    uploads = await s3.list_multipart_uploads(prefix=base + "/")
    listed = [(u.key, u.upload_id) for u in uploads]
    assert sorted(listed) == sorted(
        [(f"{base}/b", first), (f"{base}/a", second), (f"{base}/a", third)]
    )
    if s3_name == "s3-strict":
        assert listed[0] == (f"{base}/b", first)
        assert [u.initiated for u in uploads] == sorted(u.initiated for u in uploads)  # type: ignore[type-var]
    # moto stamps every upload with one fixed date (2010-11-10): its order says nothing
    assert len(await s3.list_multipart_uploads()) >= 4


@pytest.mark.strict_s3
async def test_list_multipart_uploads_reads_every_page_past_1000_uploads(
    strict_store: S3Storage, new_key: KeyMaker
) -> None:
    """moto answers every upload on one page; LocalStack pages by 1,000, as S3."""
    prefix = new_key("many")
    gate = asyncio.Semaphore(8)

    async def create(n: int) -> str:
        async with gate:
            return await strict_store.create_multipart(f"{prefix}/{n % 7}", content_type="a/b")

    created = await asyncio.gather(*(create(n) for n in range(1_003)))
    uploads = await strict_store.list_multipart_uploads(prefix=prefix + "/")
    assert sorted(u.upload_id for u in uploads) == sorted(created)


# -- errors -----------------------------------------------------------------------------------


async def test_an_upload_not_in_progress_raises_upload_not_found(
    s3: S3Storage, s3_name: str, http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    never = "bm90LWFuLXVwbG9hZA"
    aborted = await s3.create_multipart(key, content_type="text/plain")
    await s3.abort_multipart(key, aborted)
    completed = await s3.create_multipart(key, content_type="text/plain")
    parts = await upload_parts(s3, http, key, completed, {1: TAIL})
    await s3.complete_multipart(key, completed, parts)

    for upload_id in (never, aborted, completed):
        with pytest.raises(UploadNotFound):
            await s3.list_parts(key, upload_id)
        with pytest.raises(UploadNotFound):
            await s3.abort_multipart(key, upload_id)
    # moto answers 500 here (for an aborted or unknown upload): the adapter asks ListParts
    for upload_id in (never, aborted):
        with pytest.raises(UploadNotFound):
            await s3.complete_multipart(key, upload_id, parts)
    if s3_name == "s3-strict":
        with pytest.raises(UploadNotFound):
            await s3.complete_multipart(key, completed, parts)
    else:  # moto completes a completed upload again, and answers the object
        assert (await s3.complete_multipart(key, completed, parts)).size == len(TAIL)


async def test_parts_the_store_refuses_raise_parts_rejected(
    s3: S3Storage, s3_name: str, http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    upload_id = await s3.create_multipart(key, content_type="text/plain")
    small, tail = await upload_parts(s3, http, key, upload_id, {1: b"small", 2: TAIL})

    with pytest.raises(PartsRejected) as rejected:
        await s3.complete_multipart(key, upload_id, [small, tail])
    assert rejected.value.code == "EntityTooSmall"
    with pytest.raises(PartsRejected) as rejected:
        await s3.complete_multipart(key, upload_id, [CompletedPart(2, '"' + "0" * 32 + '"')])
    assert rejected.value.code == "InvalidPart"
    with pytest.raises(PartsRejected) as rejected:
        await s3.complete_multipart(key, upload_id, [CompletedPart(3, tail.etag)])
    assert rejected.value.code == "InvalidPart"
    with pytest.raises(PartsRejected) as rejected:
        await s3.complete_multipart(key, upload_id, [])
    assert rejected.value.code == "InvalidRequest"
    if s3_name == "s3-strict":  # moto checks sizes before the order
        with pytest.raises(PartsRejected) as rejected:
            await s3.complete_multipart(key, upload_id, [tail, small])
        assert rejected.value.code == "InvalidPartOrder"
    # a refusal leaves the upload in progress
    assert [p.part_number for p in await s3.list_parts(key, upload_id)] == [1, 2]
    await s3.abort_multipart(key, upload_id)


@pytest.mark.strict_s3
async def test_an_upload_that_takes_checksums_completes_only_with_every_parts_checksum(
    strict_store: S3Storage, http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    """As AWS: CompleteMultipartUpload names each part's checksum, and it must match."""
    key = new_key()
    upload_id = await strict_store.create_multipart(
        key, content_type="video/mp4", checksum_sha256=True
    )
    big, tail = await upload_parts(
        strict_store, http, key, upload_id, {1: BIG, 2: TAIL}, checksum=True
    )
    without = CompletedPart(big.part_number, big.etag)
    other = CompletedPart(big.part_number, big.etag, base64.b64encode(sha256(b"x")).decode())

    with pytest.raises(PartsRejected) as rejected:
        await strict_store.complete_multipart(key, upload_id, [without, tail])
    assert rejected.value.code == "InvalidRequest"
    assert "must include the checksum for each part" in rejected.value.message
    with pytest.raises(PartsRejected) as rejected:
        await strict_store.complete_multipart(key, upload_id, [other, tail])
    assert rejected.value.code == "InvalidPart"

    stored = await strict_store.complete_multipart(key, upload_id, [big, tail])
    assert (stored.size, stored.etag) == (len(BIG) + len(TAIL), multipart_etag(BIG, TAIL))
    assert stored.checksum_sha256 is None  # S3's composite "<sha256 of sha256s>-2" is not one
    with_checksum = await strict_store.stat(key, with_checksum=True)
    assert with_checksum is not None and with_checksum.checksum_sha256 is None
    assert await strict_store.sha256(key) == hashlib.sha256(BIG + TAIL).digest()


async def test_complete_answers_the_stored_object(
    s3: S3Storage, http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    upload_id = await s3.create_multipart(key, content_type="video/mp4", checksum_sha256=True)
    parts = await upload_parts(s3, http, key, upload_id, {1: BIG, 2: TAIL}, checksum=True)
    stored = await s3.complete_multipart(key, upload_id, parts)
    assert (stored.key, stored.size, stored.content_type) == (
        key,
        len(BIG) + len(TAIL),
        "video/mp4",
    )
    assert stored.etag == multipart_etag(BIG, TAIL)
    assert stored.checksum_sha256 is None
    stat = await s3.stat(key)
    assert stat is not None and (stat.size, stat.etag) == (stored.size, stored.etag)
    assert await s3.list_multipart_uploads(prefix=key) == []


# -- an unreachable store ---------------------------------------------------------------------


async def test_multipart_calls_to_an_unreachable_store_raise_storage_unreachable() -> None:
    client = build_client(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    store = S3Storage(client, "nowhere")
    key = "uploads/a/2026/11/b"
    try:
        with pytest.raises(StorageUnreachable):
            await store.create_multipart(key, content_type="text/plain")
        with pytest.raises(StorageUnreachable):
            await store.list_parts(key, "id")
        with pytest.raises(StorageUnreachable):
            await store.complete_multipart(key, "id", [CompletedPart(1, '"e"')])
        with pytest.raises(StorageUnreachable):
            await store.abort_multipart(key, "id")
        with pytest.raises(StorageUnreachable):
            await store.list_multipart_uploads()
        # signing is local work: it still answers
        [request] = store.presign_parts(key, "id", [PartToSign(1, 5)], expires_in=60)
        assert request.url.startswith(f"{client.meta.endpoint_url}/nowhere/{key}?uploadId=id&")
    finally:
        await store.close()
