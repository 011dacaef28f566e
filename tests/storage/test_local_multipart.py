"""Multipart uploads on the local store: what the contract suite cannot see from outside.

Upload ids that try to leave the root, part URLs the store would never sign, bodies cut short,
the lock that lets one of two racing completes make the object, memory that does not grow with
the object, and a store whose root is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import jwt
import pytest

from bigupload.disconnects import CLIENT_CLOSED_REQUEST
from bigupload.storage.base import (
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    CompletedPart,
    PartsRejected,
    PartToSign,
    StorageError,
    StorageUnreachable,
    StoredObject,
    UploadNotFound,
)
from bigupload.storage.local import LocalStorage
from bigupload.storage.local.filecopy import BUFFER as COPY_CHUNK
from bigupload.storage.local.multipart import OpenUpload
from bigupload.storage.local.tokens import PART_AUDIENCE
from tests.conftest import SECRET, TEST_BASE_URL
from tests.storage.helpers import local_app, send, sha256

KEY = "uploads/alice/2026/11/0b9d2f6c"
DATA = b"the bytes of one part"
IN_AN_HOUR = datetime.now(UTC) + timedelta(hours=1)


async def begin(store: LocalStorage, key: str = KEY, *, checksum: bool = False) -> str:
    return await store.create_multipart(key, content_type="text/plain", checksum_sha256=checksum)


async def put_part(
    store: LocalStorage, http: httpx.AsyncClient, upload_id: str, number: int, data: bytes
) -> str:
    [request] = store.presign_parts(KEY, upload_id, [PartToSign(number, len(data))], expires_in=60)
    response = await send(http, request, data)
    assert response.status_code == 200, response.text
    etag: str = response.headers["etag"]
    return etag


def forged_part_url(key: str, upload_id: str, number: int, size: int, **claims: Any) -> str:
    """A part URL signed with the store's secret for values ``presign_parts`` would refuse."""
    token = jwt.encode(
        {
            "aud": PART_AUDIENCE,
            "key": key,
            "uid": upload_id,
            "pn": number,
            "len": size,
            "exp": int(IN_AN_HOUR.timestamp()),
            **claims,
        },
        SECRET,
        algorithm="HS256",
    )
    return (
        f"/store/{quote(key)}?uploadId={quote(upload_id, safe='')}&partNumber={number}"
        f"&token={token}"
    )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if not p.is_dir())


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


# -- signing ----------------------------------------------------------------------------------


async def test_a_part_url_names_the_upload_the_part_and_a_token_for_exactly_that(
    local_store: LocalStorage,
) -> None:
    key = "uploads/a b/2026/11/é?#"
    upload_id = await begin(local_store, key, checksum=True)
    digest = sha256(DATA)
    [request] = local_store.presign_parts(
        key, upload_id, [PartToSign(7, len(DATA), digest)], expires_in=60
    )
    prefix = f"{TEST_BASE_URL}/store/uploads/a%20b/2026/11/%C3%A9%3F%23?uploadId={upload_id}"
    assert request.url.startswith(prefix + "&partNumber=7&token=")
    token = request.url.rsplit("&token=", 1)[1]
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=PART_AUDIENCE)
    assert claims == {
        "aud": PART_AUDIENCE,
        "key": key,
        "uid": upload_id,
        "pn": 7,
        "len": len(DATA),
        "sha": request.headers["x-amz-checksum-sha256"],
        "exp": int(request.expires_at.timestamp()),
    }
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}


def test_ten_thousand_part_urls_are_signed_in_one_call(local_store: LocalStorage) -> None:
    """The largest upload's part URLs in one batch (their cost is measured in bench/)."""
    upload_id = "0" * 32 + "-sha256"
    parts = [PartToSign(n, MIN_PART_SIZE, sha256(b"%d" % n)) for n in range(1, 10_001)]
    requests = local_store.presign_parts(KEY, upload_id, parts, expires_in=3600)
    assert len(requests) == 10_000 and requests[-1].url.count("partNumber=10000&") == 1
    assert len({r.url for r in requests}) == 10_000


@pytest.mark.parametrize(
    "part",
    [
        PartToSign(0, 1),
        PartToSign(10_001, 1),
        PartToSign(-1, 1),
        PartToSign(True, 1),
        PartToSign(1, -1),
        PartToSign(1, MAX_PART_SIZE + 1),
        PartToSign(1, 1, b"\x00" * 31),
    ],
    ids=["zero", "over-10000", "negative", "bool", "negative-size", "too-big", "short-digest"],
)
async def test_presign_parts_refuses_a_part_s3_would_not_take(
    local_store: LocalStorage, part: PartToSign
) -> None:
    upload_id = await begin(local_store)
    with pytest.raises(ValueError):
        local_store.presign_parts(KEY, upload_id, [PartToSign(1, 5), part], expires_in=60)
    # the limits themselves are fine
    local_store.presign_parts(KEY, upload_id, [PartToSign(10_000, MAX_PART_SIZE)], expires_in=60)


async def test_an_upload_that_takes_checksums_signs_no_part_without_one(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await begin(local_store, checksum=True)
    with pytest.raises(ValueError, match="SHA-256"):
        local_store.presign_parts(KEY, upload_id, [PartToSign(1, len(DATA))], expires_in=60)
    # nor does the store take such a part, were a token for one signed with its secret
    url = forged_part_url(KEY, upload_id, 1, len(DATA))
    assert_error(await local_http.put(url, content=DATA), 403, "checksum_required")
    assert await local_store.list_parts(KEY, upload_id) == []


# -- ids and URLs the store never signed ------------------------------------------------------

HEX = "0123456789abcdef" * 2
HOSTILE_IDS = {
    "empty": "",
    "dot": ".",
    "parent": "..",
    "parent-path": "../objects",
    "deep": "../../../../tmp/planted",
    "slash": "a/b",
    "absolute": "/etc",
    "id-then-parent": HEX + "/..",
    "id-then-id": HEX + "/../" + HEX,
    "upper-case": HEX.upper(),
    "newline": HEX + "\n",
    "short": HEX[:-1],
    "long": HEX + "0",
    "other-suffix": HEX + "-md5",
    "nul": HEX[:-1] + "\x00",
    "encoded-parent": "%2e%2e",
}


@pytest.mark.parametrize("upload_id", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
async def test_hostile_upload_ids_are_refused_everywhere(
    local_store: LocalStorage, local_http: httpx.AsyncClient, tmp_path: Path, upload_id: str
) -> None:
    (tmp_path / "outside.txt").write_bytes(b"untouched")
    before = files_under(tmp_path)
    with pytest.raises(ValueError):
        local_store.presign_parts(KEY, upload_id, [PartToSign(1, 1)], expires_in=60)
    with pytest.raises(UploadNotFound):
        await local_store.list_parts(KEY, upload_id)
    with pytest.raises(UploadNotFound):
        await local_store.complete_multipart(KEY, upload_id, [CompletedPart(1, '"x"')])
    with pytest.raises(UploadNotFound):
        await local_store.abort_multipart(KEY, upload_id)
    response = await local_http.put(forged_part_url(KEY, upload_id, 1, 5), content=b"owned")
    assert_error(response, 404, "upload_not_found")
    assert files_under(tmp_path) == before
    assert (tmp_path / "outside.txt").read_bytes() == b"untouched"


async def test_a_part_url_for_another_keys_upload_stores_nothing(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    other_key = KEY + "-other"
    upload_id = await begin(local_store, other_key)
    # signing does not read the disk, so it cannot know; the store does
    [request] = local_store.presign_parts(KEY, upload_id, [PartToSign(1, 4)], expires_in=60)
    assert_error(await send(local_http, request, b"data"), 404, "upload_not_found")
    assert await local_store.list_parts(other_key, upload_id) == []
    for call in (
        local_store.list_parts(KEY, upload_id),
        local_store.abort_multipart(KEY, upload_id),
        local_store.complete_multipart(KEY, upload_id, [CompletedPart(1, '"x"')]),
    ):
        with pytest.raises(UploadNotFound):
            await call
    assert [u.upload_id for u in await local_store.list_multipart_uploads()] == [upload_id]


async def test_whole_object_and_part_urls_are_not_interchangeable(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await begin(local_store)
    put = local_store.presign_put(
        KEY, content_type="text/plain", size=len(DATA), checksum_sha256=None, expires_in=60
    )
    [part] = local_store.presign_parts(KEY, upload_id, [PartToSign(1, len(DATA))], expires_in=60)
    token = part.url.rsplit("&token=", 1)[1]
    forgeries = [
        # a whole-object token presented as a part's
        put.url.replace("?token=", f"?uploadId={upload_id}&partNumber=1&token="),
        # a part's token presented as a whole object's, or with half of its query
        f"{TEST_BASE_URL}/store/{KEY}?token={token}",
        f"{TEST_BASE_URL}/store/{KEY}?uploadId={upload_id}&token={token}",
        f"{TEST_BASE_URL}/store/{KEY}?partNumber=1&token={token}",
        # for another key
        part.url.replace(KEY, KEY + "x"),
    ]
    for url in forgeries:
        response = await local_http.put(url, content=DATA, headers=put.headers)
        assert_error(response, 403, "url_invalid")
    assert await local_store.list_parts(KEY, upload_id) == []
    assert await local_store.stat(KEY) is None


# -- parts refused or cut short leave nothing -------------------------------------------------

CHUNK = 256 * 1024


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


@pytest.mark.parametrize(
    "body", [b"x" * (3 * CHUNK + 1), b"x" * (3 * CHUNK - 1)], ids=["long", "short"]
)
async def test_a_streamed_part_of_another_length_is_refused_and_leaves_nothing(
    local_store: LocalStorage, local_http: httpx.AsyncClient, body: bytes
) -> None:
    upload_id = await begin(local_store)
    [request] = local_store.presign_parts(KEY, upload_id, [PartToSign(1, 3 * CHUNK)], expires_in=60)
    response = await local_http.put(request.url, content=chunks(body), headers=request.headers)
    assert "content-length" not in response.request.headers
    assert_error(response, 400, "size_mismatch")
    assert await local_store.list_parts(KEY, upload_id) == []
    assert list(local_store.tmp.iterdir()) == []


async def put_then_vanish(store: LocalStorage, url: str, sent: bytes, declared: int) -> None:
    """A PUT whose client goes away after ``sent`` bytes of ``declared``: what uvicorn tells
    the app when the connection is reset."""
    parts = urlsplit(url)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": unquote(parts.path),
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-length", str(declared).encode())],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": sent[i : i + CHUNK], "more_body": True}
        for i in range(0, len(sent), CHUNK)
    ]
    messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    replies: list[dict[str, Any]] = []

    async def reply(message: dict[str, Any]) -> None:
        replies.append(message)

    await local_app(store)(scope, receive, reply)  # as for a whole object, the app gives up
    assert messages == []
    assert replies[0]["status"] == CLIENT_CLOSED_REQUEST  # what the access log shows


async def test_a_part_upload_cut_short_leaves_no_part_and_keeps_the_earlier_one(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await begin(local_store)
    size = 4 * CHUNK
    earlier = await put_part(local_store, local_http, upload_id, 1, b"e" * size)
    [again, fresh] = local_store.presign_parts(
        KEY, upload_id, [PartToSign(1, size), PartToSign(2, size)], expires_in=60
    )
    for request in (again, fresh):
        await put_then_vanish(local_store, request.url, b"n" * (2 * CHUNK), size)
    parts = await local_store.list_parts(KEY, upload_id)
    assert [(p.part_number, p.etag) for p in parts] == [(1, earlier)]
    assert list(local_store.tmp.iterdir()) == []
    # and the same URL works once the whole body arrives
    assert (await send(local_http, fresh, b"n" * size)).status_code == 200
    assert [p.part_number for p in await local_store.list_parts(KEY, upload_id)] == [1, 2]


# -- listing and completing --------------------------------------------------------------------


async def test_parts_are_listed_by_number_not_by_name(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await begin(local_store)
    for number in (10, 2, 1, 100):
        await put_part(local_store, local_http, upload_id, number, b"%d" % number)
    parts = await local_store.list_parts(KEY, upload_id)
    assert [p.part_number for p in parts] == [1, 2, 10, 100]
    assert [p.size for p in parts] == [1, 1, 2, 3]


async def test_a_part_named_twice_is_out_of_order(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    """As AWS S3 (LocalStack 2026.3 accepts it, and joins the part twice)."""
    upload_id = await begin(local_store)
    etag = await put_part(local_store, local_http, upload_id, 1, DATA)
    with pytest.raises(PartsRejected) as refusal:
        await local_store.complete_multipart(
            KEY, upload_id, [CompletedPart(1, etag), CompletedPart(1, etag)]
        )
    assert refusal.value.code == "InvalidPartOrder"


async def test_etags_match_with_or_without_quotes(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await begin(local_store)
    etag = await put_part(local_store, local_http, upload_id, 1, DATA)
    assert etag.startswith('"') and etag.endswith('"')
    done = await local_store.complete_multipart(KEY, upload_id, [CompletedPart(1, etag[1:-1])])
    assert done.size == len(DATA)


async def test_completing_keeps_only_the_named_parts_and_clears_the_upload(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await begin(local_store)
    await put_part(local_store, local_http, upload_id, 1, b"one")
    await put_part(local_store, local_http, upload_id, 1, b"one, again")
    one = await put_part(local_store, local_http, upload_id, 1, b"one, third time")
    await put_part(local_store, local_http, upload_id, 2, b"two")
    await put_part(local_store, local_http, upload_id, 3, b"three")
    stored = await local_store.complete_multipart(KEY, upload_id, [CompletedPart(1, one)])
    assert stored.size == len(b"one, third time")
    assert await local_store.sha256(KEY) == sha256(b"one, third time")
    assert list(local_store.multipart.iterdir()) == []
    assert list(local_store.tmp.iterdir()) == []
    assert sorted(p.parent.parent.parent.name for p in files_under(local_store.root)) == [
        "meta",
        "objects",
    ]
    again = await local_store.stat(KEY, with_checksum=True)
    assert again is not None
    assert (again.content_type, again.checksum_sha256) == (
        "text/plain",
        hashlib.sha256(b"one, third time").hexdigest(),
    )


async def test_uploads_outlive_the_store_object(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    """Everything is on disk: another process (a restarted one) carries on."""
    upload_id = await begin(local_store)
    etag = await put_part(local_store, local_http, upload_id, 1, DATA)
    reopened = LocalStorage(local_store.root, public_url=TEST_BASE_URL, secret=SECRET)
    assert [u.upload_id for u in await reopened.list_multipart_uploads()] == [upload_id]
    assert [p.etag for p in await reopened.list_parts(KEY, upload_id)] == [etag]
    await reopened.complete_multipart(KEY, upload_id, [CompletedPart(1, etag)])
    assert await local_store.sha256(KEY) == sha256(DATA)


async def test_assembly_streams_its_memory_does_not_grow_with_the_parts(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    """Joining two 5 MiB parts allocates about one copy buffer, not a part, not the object."""
    upload_id = await begin(local_store)
    first, second = os.urandom(MIN_PART_SIZE), os.urandom(MIN_PART_SIZE)
    named = [
        CompletedPart(1, await put_part(local_store, local_http, upload_id, 1, first)),
        CompletedPart(2, await put_part(local_store, local_http, upload_id, 2, second)),
        CompletedPart(3, await put_part(local_store, local_http, upload_id, 3, DATA)),
    ]
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        await local_store.complete_multipart(KEY, upload_id, named)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * COPY_CHUNK < MIN_PART_SIZE, peak
    assert await local_store.sha256(KEY) == sha256(first + second + DATA)


# -- racing and failing completes ---------------------------------------------------------------


@contextlib.contextmanager
def lock_held(store: LocalStorage, upload_id: str) -> Iterator[None]:
    """The upload's lock, held as another process holds it."""
    fd = os.open(store.multipart / upload_id / "lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


async def test_of_completes_waiting_on_one_lock_one_makes_the_object(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await begin(local_store)
    named = [CompletedPart(1, await put_part(local_store, local_http, upload_id, 1, DATA))]
    with lock_held(local_store, upload_id):
        tasks = [
            asyncio.create_task(local_store.complete_multipart(KEY, upload_id, named)),
            asyncio.create_task(local_store.complete_multipart(KEY, upload_id, named)),
            asyncio.create_task(local_store.abort_multipart(KEY, upload_id)),
        ]
        await asyncio.sleep(0.2)
        assert not any(task.done() for task in tasks)  # all three wait for the lock
        assert await local_store.stat(KEY) is None
    results = await asyncio.gather(*tasks, return_exceptions=True)
    made = [r for r in results if isinstance(r, StoredObject)]
    gone = [r for r in results if isinstance(r, UploadNotFound)]
    aborted = [r for r in results if r is None]
    assert (len(made), len(gone)) in {(1, 2), (0, 2)}, results
    if made:
        assert await local_store.sha256(KEY) == sha256(DATA)
    else:  # the abort came first
        assert aborted and await local_store.stat(KEY) is None
    assert list(local_store.multipart.iterdir()) == []


async def test_a_complete_never_replaces_a_stored_object(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await begin(local_store)
    etag = await put_part(local_store, local_http, upload_id, 1, DATA)
    existing = local_store.presign_put(
        KEY, content_type="text/csv", size=5, checksum_sha256=None, expires_in=60
    )
    assert (await send(local_http, existing, b"first")).status_code == 200
    before = await local_store.stat(KEY)
    with pytest.raises(StorageError) as failure:
        await local_store.complete_multipart(KEY, upload_id, [CompletedPart(1, etag)])
    assert type(failure.value) is StorageError
    assert await local_store.stat(KEY) == before
    assert await local_store.sha256(KEY) == sha256(b"first")
    assert [p.etag for p in await local_store.list_parts(KEY, upload_id)] == [etag]  # kept
    assert list(local_store.tmp.iterdir()) == []


async def test_a_complete_that_stopped_after_making_the_object_is_finished_by_the_next(
    local_store: LocalStorage, local_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id = await begin(local_store)
    etag = await put_part(local_store, local_http, upload_id, 1, DATA)

    def crash(self: OpenUpload) -> None:
        raise OSError("the process died here")

    with monkeypatch.context() as patch:
        patch.setattr(OpenUpload, "remove", crash)
        with pytest.raises(OSError, match="died"):
            await local_store.complete_multipart(KEY, upload_id, [CompletedPart(1, etag)])
    assert await local_store.sha256(KEY) == sha256(DATA)
    assert len(await local_store.list_multipart_uploads()) == 1  # left behind

    with pytest.raises(UploadNotFound):  # the caller then finds the object with stat()
        await local_store.complete_multipart(KEY, upload_id, [CompletedPart(1, etag)])
    assert await local_store.list_multipart_uploads() == []
    assert await local_store.sha256(KEY) == sha256(DATA)


# -- an unreachable store -----------------------------------------------------------------------


async def test_multipart_on_a_store_whose_root_was_removed_raises_storage_unreachable(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await begin(local_store)
    [request] = local_store.presign_parts(KEY, upload_id, [PartToSign(1, len(DATA))], expires_in=60)
    shutil.rmtree(local_store.root)
    calls = [
        local_store.create_multipart(KEY, content_type="text/plain"),
        local_store.list_parts(KEY, upload_id),
        local_store.complete_multipart(KEY, upload_id, [CompletedPart(1, '"x"')]),
        local_store.abort_multipart(KEY, upload_id),
        local_store.list_multipart_uploads(),
    ]
    for call in calls:
        with pytest.raises(StorageUnreachable):
            await call
    assert_error(await send(local_http, request, DATA), 503, "storage_unavailable")
    assert not local_store.root.exists()
