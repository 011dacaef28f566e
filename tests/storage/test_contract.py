"""The storage port's contract, run against every adapter over real HTTP.

Like Rails' ``shared_service_tests.rb``: the same tests run on the local store (served by
bigupload's ``/store`` endpoints), on moto and on LocalStack. The refusal tests run only where
the store enforces what it signed: ``local`` and ``s3-strict``; moto accepts a tampered or
expired URL, any Content-Type, any length and any checksum, so there they would prove nothing.

Keys live in one flat space, as in S3: ``a`` and ``a/b`` side by side, and segments of any
length up to the 1,024-byte key limit, on every adapter.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bigupload import clock
from bigupload.storage.base import ObjectNotFound, Storage, StorageUnreachable
from bigupload.storage.disposition import content_disposition
from bigupload.storage.keys import InvalidKey
from bigupload.storage.local import LocalStorage
from bigupload.storage.s3 import S3Storage, build_client
from tests.storage.conftest import ENFORCING
from tests.storage.helpers import error_code, send, sha256, tampered
from tests.support.net import free_port

DATA = b"0123456789abcdef" * 640 + b"tail"  # 10,244 bytes
KeyMaker = Callable[..., str]


async def put(
    store: Storage,
    http: httpx.AsyncClient,
    key: str,
    data: bytes = DATA,
    *,
    content_type: str = "application/x-tar",
    checksum: bool = True,
) -> httpx.Response:
    request = store.presign_put(
        key,
        content_type=content_type,
        size=len(data),
        checksum_sha256=sha256(data) if checksum else None,
        expires_in=600,
    )
    response = await send(http, request, data)
    assert response.status_code == 200, response.text
    return response


# -- storing ----------------------------------------------------------------------------------


async def test_presigned_put_stores_the_bytes_it_was_signed_for(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    request = store.presign_put(
        key,
        content_type="application/x-tar",
        size=len(DATA),
        checksum_sha256=sha256(DATA),
        expires_in=600,
    )
    assert request.method == "PUT"
    response = await send(http_for_store, request, DATA)
    assert response.status_code == 200, response.text

    # S3's ETag of a single PUT is its MD5; the local store's, sent no Content-MD5, is the
    # first 16 bytes of its SHA-256.
    if adapter == "local":
        tag = hashlib.sha256(DATA).hexdigest()[:32]
    else:
        tag = hashlib.md5(DATA).hexdigest()
    stored = await store.stat(key)
    assert stored is not None
    assert (stored.key, stored.size, stored.content_type) == (key, len(DATA), "application/x-tar")
    assert stored.etag == f'"{tag}"'
    assert response.headers["etag"] == stored.etag

    with_checksum = await store.stat(key, with_checksum=True)
    assert with_checksum is not None
    if adapter == "s3-moto":
        # moto records a checksum only when the PUT also sends x-amz-sdk-checksum-algorithm,
        # which a presigned PUT does not: it keeps none, and says so.
        assert with_checksum.checksum_sha256 is None
    else:
        assert with_checksum.checksum_sha256 == hashlib.sha256(DATA).hexdigest()
    assert await store.sha256(key) == hashlib.sha256(DATA).digest()


async def test_presigned_put_hands_over_exactly_the_headers_it_signed(store: Storage) -> None:
    digest = sha256(DATA)
    with_checksum = store.presign_put(
        "uploads/a/2026/11/b",
        content_type="video/mp4",
        size=3,
        checksum_sha256=digest,
        expires_in=60,
    )
    without = store.presign_put(
        "uploads/a/2026/11/b", content_type="video/mp4", size=3, checksum_sha256=None, expires_in=60
    )
    assert with_checksum.headers == {
        "Content-Type": "video/mp4",
        "If-None-Match": "*",
        "x-amz-checksum-sha256": base64.b64encode(digest).decode(),
    }
    assert without.headers == {"Content-Type": "video/mp4", "If-None-Match": "*"}


async def test_a_put_signed_without_checksum_stores_any_bytes_of_that_size(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    await put(store, http_for_store, key, checksum=False)
    stored = await store.stat(key)
    assert stored is not None and stored.size == len(DATA)
    assert await store.sha256(key) == hashlib.sha256(DATA).digest()


async def test_presigned_urls_say_when_they_expire(
    store: Storage, set_clock: Callable[[datetime], None]
) -> None:
    now = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
    set_clock(now)
    upload = store.presign_put(
        "uploads/a/2026/11/b",
        content_type="video/mp4",
        size=3,
        checksum_sha256=None,
        expires_in=900,
    )
    download = store.presign_get(
        "uploads/a/2026/11/b", filename="b.mp4", content_type="video/mp4", expires_in=60
    )
    assert upload.expires_at == now + timedelta(seconds=900)
    assert download.expires_at == now + timedelta(seconds=60)
    assert download.method == "GET"
    assert download.headers == {}


async def test_an_empty_object_can_be_stored(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    await put(store, http_for_store, key, b"", checksum=False)
    stored = await store.stat(key)
    assert stored is not None and stored.size == 0
    assert await store.sha256(key) == hashlib.sha256(b"").digest()


# -- reading ----------------------------------------------------------------------------------


async def test_presigned_get_answers_the_bytes_under_an_ascii_name(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    await put(store, http_for_store, key)
    request = store.presign_get(
        key, filename="report-2026.pdf", content_type="application/pdf", expires_in=600
    )
    response = await send(http_for_store, request)
    assert response.status_code == 200, response.text
    assert response.content == DATA
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == 'attachment; filename="report-2026.pdf"'
    assert response.headers["content-disposition"] == content_disposition("report-2026.pdf")


async def test_presigned_get_names_a_non_ascii_file_with_quotes_exactly(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    await put(store, http_for_store, key)
    filename = 'résumé "final".pdf'
    request = store.presign_get(
        key, filename=filename, content_type="application/pdf", expires_in=600
    )
    response = await send(http_for_store, request)
    assert response.status_code == 200, response.text
    assert response.content == DATA
    raw = [value for name, value in response.headers.raw if name.lower() == b"content-disposition"]
    assert raw == [content_disposition(filename).encode("ascii")]
    assert raw == [
        b'attachment; filename="resume _final_.pdf"; '
        b"filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
    ]


async def test_stat_of_a_missing_key_is_none(store: Storage, new_key: KeyMaker) -> None:
    assert await store.stat(new_key()) is None
    assert await store.stat(new_key(), with_checksum=True) is None


async def test_sha256_of_a_missing_key_raises_object_not_found(
    store: Storage, new_key: KeyMaker
) -> None:
    with pytest.raises(ObjectNotFound):
        await store.sha256(new_key())


#: What a presigned GET of a missing key answers. moto 5.2 answers 403 SignatureDoesNotMatch
#: (a moto quirk: its presigned GETs of stored keys answer 200); LocalStack answers as AWS does
#: when the credentials may list the bucket.
MISSING = {
    "local": (404, "not_found"),
    "s3-moto": (403, "SignatureDoesNotMatch"),
    "s3-strict": (404, "NoSuchKey"),
}


async def test_presigned_get_of_a_missing_key_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    request = store.presign_get(
        new_key(), filename="a.pdf", content_type="application/pdf", expires_in=600
    )
    response = await send(http_for_store, request)
    assert (response.status_code, error_code(store, response)) == MISSING[adapter]


# -- deleting ---------------------------------------------------------------------------------


async def test_delete_removes_the_object(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key, neighbour = new_key("a"), new_key("b")
    await put(store, http_for_store, key)
    await put(store, http_for_store, neighbour, b"other", checksum=False)
    await store.delete(key)
    assert await store.stat(key) is None
    with pytest.raises(ObjectNotFound):
        await store.sha256(key)
    download = store.presign_get(key, filename="a", content_type="text/plain", expires_in=600)
    response = await send(http_for_store, download)
    assert (response.status_code, error_code(store, response)) == MISSING[adapter]
    remaining = await store.stat(neighbour)
    assert remaining is not None and remaining.size == len(b"other")


async def test_deleting_a_missing_key_is_fine(store: Storage, new_key: KeyMaker) -> None:
    key = new_key()
    await store.delete(key)
    await store.delete(key)
    assert await store.stat(key) is None


#: What a second upload to a stored key answers: every adapter signs ``If-None-Match: *``.
EXISTS = {
    "local": (412, "object_exists"),
    "s3-moto": (412, "PreconditionFailed"),
    "s3-strict": (412, "PreconditionFailed"),
}


async def test_an_upload_url_never_replaces_a_stored_object(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    first = store.presign_put(
        key, content_type="text/plain", size=len(DATA), checksum_sha256=None, expires_in=600
    )
    assert (await send(http_for_store, first, DATA)).status_code == 200
    before = await store.stat(key)

    replayed = await send(http_for_store, first, DATA)
    other = b"second".ljust(len(DATA), b".")
    second = store.presign_put(
        key, content_type="text/plain", size=len(other), checksum_sha256=None, expires_in=600
    )
    replaced = await send(http_for_store, second, other)

    for response in (replayed, replaced):
        assert (response.status_code, error_code(store, response)) == EXISTS[adapter]
    assert await store.stat(key) == before
    assert await store.sha256(key) == hashlib.sha256(DATA).digest()


async def test_a_deleted_key_can_be_stored_again(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    await put(store, http_for_store, key)
    await store.delete(key)
    await put(store, http_for_store, key, b"second", content_type="text/csv")
    stored = await store.stat(key)
    assert stored is not None
    assert (stored.size, stored.content_type) == (len(b"second"), "text/csv")
    assert await store.sha256(key) == hashlib.sha256(b"second").digest()


# -- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a b é", "ü/ñ 中文 😀.bin", "semi;colon,comma+plus&amp=eq", "per%25cent?q#frag"]
)
async def test_any_valid_key_round_trips(
    store: Storage, http_for_store: httpx.AsyncClient, name: str, new_key: KeyMaker
) -> None:
    key = new_key(name)
    await put(store, http_for_store, key)
    stored = await store.stat(key)
    assert stored is not None and stored.key == key and stored.size == len(DATA)
    assert await store.sha256(key) == hashlib.sha256(DATA).digest()
    download = store.presign_get(key, filename="x.bin", content_type="text/plain", expires_in=60)
    response = await send(http_for_store, download)
    assert response.status_code == 200, response.text
    assert response.content == DATA
    await store.delete(key)
    assert await store.stat(key) is None


async def test_a_key_with_a_long_segment_round_trips(
    store: Storage,
    http_for_store: httpx.AsyncClient,
    new_key: KeyMaker,
) -> None:
    key = new_key("n" * 300)
    await put(store, http_for_store, key)
    stored = await store.stat(key)
    assert stored is not None and stored.size == len(DATA)


async def test_a_key_that_prefixes_stored_keys_holds_nothing_and_can_be_stored(
    store: Storage,
    http_for_store: httpx.AsyncClient,
    new_key: KeyMaker,
) -> None:
    prefix = new_key("dir")
    await put(store, http_for_store, prefix + "/child")
    assert await store.stat(prefix) is None
    with pytest.raises(ObjectNotFound):
        await store.sha256(prefix)
    await store.delete(prefix)
    assert await store.stat(prefix + "/child") is not None
    await put(store, http_for_store, prefix, b"parent", checksum=False)
    assert await store.sha256(prefix) == hashlib.sha256(b"parent").digest()


async def test_a_key_under_a_stored_key_holds_nothing_and_can_be_stored(
    store: Storage,
    http_for_store: httpx.AsyncClient,
    new_key: KeyMaker,
) -> None:
    parent = new_key("file")
    await put(store, http_for_store, parent)
    assert await store.stat(parent + "/child") is None
    await store.delete(parent + "/child")
    await put(store, http_for_store, parent + "/child", b"child", checksum=False)
    assert await store.sha256(parent + "/child") == hashlib.sha256(b"child").digest()
    assert await store.sha256(parent) == hashlib.sha256(DATA).digest()


@pytest.mark.parametrize("key", ["", "/abs/key", "a/../b", "a//b", "a\\b", "a\x00b", "é" * 513])
async def test_invalid_keys_are_refused_before_anything_is_signed(store: Storage, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.presign_put(
            key, content_type="text/plain", size=1, checksum_sha256=None, expires_in=1
        )
    with pytest.raises(InvalidKey):
        store.presign_get(key, filename="a", content_type="text/plain", expires_in=1)
    with pytest.raises(InvalidKey):
        await store.stat(key)
    with pytest.raises(InvalidKey):
        await store.delete(key)


async def test_check_passes_on_a_live_store(store: Storage) -> None:
    await store.check()  # raises StorageUnreachable otherwise


# -- refusals (local and s3-strict only) ------------------------------------------------------

#: What each enforcing adapter answers: (HTTP status, error code). For ``local`` the code is
#: bigupload's JSON ``error.code``; for S3 it is the XML ``<Code>``. S3 signs Content-Length and
#: Content-Type into the URL, so a different one breaks the signature itself.
REFUSED = {
    "local": {
        "tampered": (403, "url_invalid"),
        "expired": (403, "url_expired"),
        "content_type": (403, "content_type_mismatch"),
        "longer": (403, "size_mismatch"),
        "shorter": (403, "size_mismatch"),
        "bad_digest": (400, "checksum_mismatch"),
        "no_precondition": (403, "precondition_header_missing"),
    },
    "s3-strict": {
        "tampered": (403, "SignatureDoesNotMatch"),
        "expired": (403, "AccessDenied"),
        "content_type": (403, "SignatureDoesNotMatch"),
        "longer": (403, "SignatureDoesNotMatch"),
        "shorter": (403, "SignatureDoesNotMatch"),
        "bad_digest": (400, "BadDigest"),
        "no_precondition": (403, "SignatureDoesNotMatch"),
    },
}


def signed_put(store: Storage, key: str, *, expires_in: int = 600) -> tuple[str, dict[str, str]]:
    request = store.presign_put(
        key,
        content_type="application/x-tar",
        size=len(DATA),
        checksum_sha256=sha256(DATA),
        expires_in=expires_in,
    )
    return request.url, dict(request.headers)


async def assert_refused(
    store: Storage, adapter: str, response: httpx.Response, case: str, key: str
) -> None:
    assert (response.status_code, error_code(store, response)) == REFUSED[adapter][case], (
        response.text
    )
    assert await store.stat(key) is None


@ENFORCING
async def test_a_tampered_signature_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    url, headers = signed_put(store, key)
    response = await http_for_store.put(tampered(store, url), content=DATA, headers=headers)
    await assert_refused(store, adapter, response, "tampered", key)
    # the genuine URL still works: the refusal was for the altered character only
    assert (await http_for_store.put(url, content=DATA, headers=headers)).status_code == 200


@ENFORCING
async def test_a_tampered_download_signature_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    await put(store, http_for_store, key)
    url = store.presign_get(key, filename="a.tar", content_type="text/plain", expires_in=60).url
    response = await http_for_store.get(tampered(store, url))
    assert (response.status_code, error_code(store, response)) == REFUSED[adapter]["tampered"]
    assert DATA not in response.content
    assert (await http_for_store.get(url)).content == DATA


@ENFORCING
async def test_an_expired_url_is_refused(
    store: Storage,
    adapter: str,
    http_for_store: httpx.AsyncClient,
    new_key: KeyMaker,
    set_clock: Callable[[datetime], None],
) -> None:
    key = new_key()
    if isinstance(store, LocalStorage):
        # Sign an hour in the past: the token's expiry is long gone when it is checked.
        set_clock(datetime.now(UTC) - timedelta(hours=1))
        url, headers = signed_put(store, key, expires_in=60)
        clock.set_clock(None)
    else:
        # boto3 signs with the system clock: a real (short) wait is the only way.
        url, headers = signed_put(store, key, expires_in=1)
        await asyncio.sleep(2.1)
    response = await http_for_store.put(url, content=DATA, headers=headers)
    await assert_refused(store, adapter, response, "expired", key)


@ENFORCING
async def test_a_different_content_type_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    url, headers = signed_put(store, key)
    response = await http_for_store.put(
        url, content=DATA, headers={**headers, "Content-Type": "text/html"}
    )
    await assert_refused(store, adapter, response, "content_type", key)


@ENFORCING
async def test_a_body_longer_than_signed_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    url, headers = signed_put(store, key)
    body = DATA + b"!"
    # httpx sends the honest Content-Length of the body it is given
    response = await http_for_store.put(url, content=body, headers=headers)
    assert response.request.headers["content-length"] == str(len(body))
    await assert_refused(store, adapter, response, "longer", key)


@ENFORCING
async def test_a_body_shorter_than_signed_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    url, headers = signed_put(store, key)
    body = DATA[:-1]
    response = await http_for_store.put(url, content=body, headers=headers)
    assert response.request.headers["content-length"] == str(len(body))
    await assert_refused(store, adapter, response, "shorter", key)


@ENFORCING
async def test_a_body_of_the_right_size_with_another_digest_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    url, headers = signed_put(store, key)
    body = b"X" + DATA[1:]
    assert len(body) == len(DATA)
    response = await http_for_store.put(url, content=body, headers=headers)
    await assert_refused(store, adapter, response, "bad_digest", key)


@ENFORCING
async def test_a_put_without_the_signed_if_none_match_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    url, headers = signed_put(store, key)
    del headers["If-None-Match"]
    response = await http_for_store.put(url, content=DATA, headers=headers)
    await assert_refused(store, adapter, response, "no_precondition", key)


# -- an unreachable store -----------------------------------------------------------------------


async def test_an_s3_store_that_cannot_be_reached_raises_storage_unreachable() -> None:
    client = build_client(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    store = S3Storage(client, "nowhere")
    try:
        with pytest.raises(StorageUnreachable):
            await store.stat("uploads/a/2026/11/b")
        with pytest.raises(StorageUnreachable):
            await store.delete("uploads/a/2026/11/b")
        with pytest.raises(StorageUnreachable):
            await store.check()
        with pytest.raises(StorageUnreachable):
            await store.sha256("uploads/a/2026/11/b")
        # signing is local work: it still answers
        assert store.presign_get("a", filename="a", content_type="a/b", expires_in=1).url
    finally:
        await store.close()


@pytest.mark.parametrize(
    "fixture", ["moto_store", pytest.param("strict_store", marks=pytest.mark.strict_s3)]
)
async def test_check_on_a_missing_bucket_raises_storage_unreachable(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    live: S3Storage = request.getfixturevalue(fixture)
    await live.check()
    store = S3Storage(live.client, live.bucket + "-missing")
    try:
        with pytest.raises(StorageUnreachable):
            await store.check()
    finally:
        await store.close()


def test_s3_without_conditional_writes_signs_no_precondition() -> None:
    """For S3-compatible stores that lack ``If-None-Match`` on PUT."""
    client = build_client(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    key = "uploads/a/2026/11/b"
    plain = S3Storage(client, "b", conditional_writes=False)
    guarded = S3Storage(client, "b")
    unguarded_put, guarded_put = (
        store.presign_put(
            key, content_type="video/mp4", size=3, checksum_sha256=None, expires_in=60
        )
        for store in (plain, guarded)
    )
    client.close()
    assert unguarded_put.headers == {"Content-Type": "video/mp4"}
    assert "if-none-match" not in unguarded_put.url
    assert "if-none-match" in guarded_put.url  # X-Amz-SignedHeaders=...;if-none-match


async def test_a_local_store_whose_root_was_removed_raises_storage_unreachable(
    local_store: LocalStorage,
) -> None:
    await local_store.check()
    shutil.rmtree(local_store.root)
    with pytest.raises(StorageUnreachable):
        await local_store.stat("uploads/a/2026/11/b")
    with pytest.raises(StorageUnreachable):
        await local_store.check()
    with pytest.raises(StorageUnreachable):
        await local_store.delete("uploads/a/2026/11/b")
    with pytest.raises(StorageUnreachable):
        await local_store.sha256("uploads/a/2026/11/b")
