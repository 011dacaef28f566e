"""Part URLs signed without a length (``PartToSign(size=None)``), for uploaders that do not say
how long their parts are (Uppy): any length up to S3's 5 GiB part limit, on every adapter.

S3 then signs no ``content-length``; the local store's part token carries no length and the
store refuses a part past 5 GiB (``entity_too_large``, as S3 answers ``EntityTooLarge``).
Sized part URLs keep binding their exact length (``test_multipart_contract.py``).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from bigupload.storage.base import (
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    CompletedPart,
    PartToSign,
    Storage,
)
from bigupload.storage.local import LocalStorage
from bigupload.storage.local.tokens import TokenInvalid
from bigupload.storage.s3 import S3Storage
from tests.conftest import SECRET
from tests.storage.helpers import error_code, send, sha256

KeyMaker = Callable[..., str]
BIG = os.urandom(MIN_PART_SIZE)
TAIL = b"the last part, of a length nobody said"
CONTENT_TYPE = "application/x-tar"


@pytest.mark.parametrize("with_checksum", [False, True], ids=["plain", "checksum"])
async def test_size_less_parts_make_an_object(
    store: Storage,
    http_for_store: httpx.AsyncClient,
    new_key: KeyMaker,
    with_checksum: bool,
) -> None:
    key = new_key()
    upload_id = await store.create_multipart(
        key, content_type=CONTENT_TYPE, checksum_sha256=with_checksum
    )
    bodies = {1: BIG, 2: TAIL}
    parts = [
        PartToSign(n, None, sha256(body) if with_checksum else None) for n, body in bodies.items()
    ]
    requests = store.presign_parts(key, upload_id, parts, expires_in=600)
    completed = []
    for part, request in zip(parts, requests, strict=True):
        if isinstance(store, S3Storage):
            query = parse_qs(urlsplit(request.url).query)
            signed = "host;x-amz-checksum-sha256" if with_checksum else "host"
            assert query["X-Amz-SignedHeaders"] == [signed]
        response = await send(http_for_store, request, bodies[part.part_number])
        assert response.status_code == 200, response.text
        checksum = base64.b64encode(sha256(bodies[part.part_number])).decode()
        completed.append(
            CompletedPart(
                part.part_number, response.headers["etag"], checksum if with_checksum else None
            )
        )

    listed = await store.list_parts(key, upload_id)
    assert [(p.part_number, p.size) for p in listed] == [(1, len(BIG)), (2, len(TAIL))]
    stored = await store.complete_multipart(key, upload_id, completed)
    assert stored.size == len(BIG) + len(TAIL)
    assert await store.sha256(key) == sha256(BIG + TAIL)


async def test_a_size_less_part_url_takes_a_part_of_another_length_again(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    """The URL binds no length: a part sent again, shorter, replaces the first."""
    key = new_key()
    upload_id = await store.create_multipart(key, content_type=CONTENT_TYPE)
    [request] = store.presign_parts(key, upload_id, [PartToSign(1, None)], expires_in=600)
    for body in (TAIL * 3, TAIL):
        assert (await send(http_for_store, request, body)).status_code == 200
    assert [(p.part_number, p.size) for p in await store.list_parts(key, upload_id)] == [
        (1, len(TAIL))
    ]
    await store.abort_multipart(key, upload_id)


async def test_sized_and_size_less_parts_sign_in_one_call(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    upload_id = await store.create_multipart(key, content_type=CONTENT_TYPE)
    parts = [PartToSign(1, len(BIG)), PartToSign(2, None)]
    requests = store.presign_parts(key, upload_id, parts, expires_in=600)
    etags = []
    for request, body in zip(requests, (BIG, TAIL), strict=True):
        response = await send(http_for_store, request, body)
        assert response.status_code == 200, response.text
        etags.append(response.headers["etag"])
    stored = await store.complete_multipart(
        key, upload_id, [CompletedPart(n, etag) for n, etag in enumerate(etags, 1)]
    )
    assert stored.size == len(BIG) + len(TAIL)


# -- the local store's limit ------------------------------------------------------------------


async def begin_local(store: LocalStorage, key: str) -> tuple[str, str]:
    upload_id = await store.create_multipart(key, content_type=CONTENT_TYPE)
    [request] = store.presign_parts(key, upload_id, [PartToSign(1, None)], expires_in=600)
    return upload_id, request.url


def leftovers(store: LocalStorage) -> list[str]:
    return [str(p) for p in store.tmp.rglob("*") if p.is_file()]


async def test_the_local_store_refuses_a_size_less_part_past_its_limit_while_streaming(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    """The limit is S3's 5 GiB; lowered here so that a test can cross it."""
    local_store.max_part_size = 1000
    key = new_key()
    upload_id, url = await begin_local(local_store, key)

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: only the bytes can tell
        for _ in range(5):
            yield b"x" * 300

    response = await local_http.put(url, content=body())
    assert "content-length" not in response.request.headers
    assert (response.status_code, error_code(local_store, response)) == (400, "entity_too_large")
    assert await local_store.list_parts(key, upload_id) == []
    assert leftovers(local_store) == []
    # exactly the limit is a part
    response = await local_http.put(url, content=b"x" * 1000)
    assert response.status_code == 200, response.text
    assert [p.size for p in await local_store.list_parts(key, upload_id)] == [1000]


async def test_the_local_store_refuses_a_declared_length_past_5_gib_before_reading(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    assert local_store.max_part_size == MAX_PART_SIZE
    key = new_key()
    upload_id, url = await begin_local(local_store, key)
    reads = []

    async def body() -> AsyncIterator[bytes]:
        reads.append(1)
        yield b"x"

    response = await local_http.put(
        url, content=body(), headers={"Content-Length": str(MAX_PART_SIZE + 1)}
    )
    assert (response.status_code, error_code(local_store, response)) == (400, "entity_too_large")
    assert reads == []  # refused on the header, before a byte of the body was read
    assert await local_store.list_parts(key, upload_id) == []


def jwt_claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return claims


def test_a_size_less_part_token_carries_no_length(local_store: LocalStorage) -> None:
    key = "uploads/a/2026/11/b"
    upload_id = "0" * 32
    [unsized, sized] = local_store.signer.sign_parts(
        key, upload_id, [(1, None, None), (2, 7, None)], datetime.now(UTC) + timedelta(minutes=1)
    )
    assert "len" not in jwt_claims(unsized)
    assert jwt_claims(sized)["len"] == 7
    assert local_store.signer.verify_part(unsized, key, upload_id, "1").size is None
    assert local_store.signer.verify_part(sized, key, upload_id, "2").size == 7


@pytest.mark.parametrize("length", [None, "7", 1.5])
def test_a_part_token_whose_length_is_not_a_number_is_refused(
    local_store: LocalStorage, length: object
) -> None:
    """A length that is there must be a number: only its absence means any length."""
    claims = {
        "aud": "bigupload:store:part",
        "key": "k",
        "uid": "0" * 32,
        "pn": 1,
        "len": length,
        "exp": int((datetime.now(UTC) + timedelta(minutes=1)).timestamp()),
    }
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(TokenInvalid):
        local_store.signer.verify_part(token, "k", "0" * 32, "1")


def test_the_local_store_signs_a_size_less_part_within_the_limits(
    local_store: LocalStorage,
) -> None:
    upload_id = "0" * 32
    with pytest.raises(ValueError):
        local_store.presign_parts("k", upload_id, [PartToSign(0, None)], expires_in=60)
    with pytest.raises(ValueError):
        local_store.presign_parts("k", upload_id + "-sha256", [PartToSign(1, None)], expires_in=60)
    [request] = local_store.presign_parts("k", upload_id, [PartToSign(3, None)], expires_in=60)
    assert (request.method, request.headers) == ("PUT", {})
    assert "partNumber=3&token=" in request.url
