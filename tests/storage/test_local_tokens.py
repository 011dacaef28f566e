"""The local store's signed tokens: each allows one purpose, on one key, as signed.

A download link is never an upload link (and vice versa), a link for one key opens no other,
and a token whose claims were changed after signing is refused: 403 ``url_invalid``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from bigupload.storage.local import LocalStorage
from bigupload.storage.local.tokens import (
    GET_AUDIENCE,
    POST_AUDIENCE,
    PUT_AUDIENCE,
    GetGrant,
    PostGrant,
    PutGrant,
    TokenExpired,
    TokenInvalid,
    TokenSigner,
)
from tests.conftest import SECRET
from tests.storage.helpers import send, sha256

DATA = b"the bytes of a file"
IN_AN_HOUR = datetime.now(UTC) + timedelta(hours=1)


def presign_put(store: LocalStorage, key: str = "k", *, checksum: bool = False) -> Any:
    return store.presign_put(
        key,
        content_type="text/plain",
        size=len(DATA),
        checksum_sha256=sha256(DATA) if checksum else None,
        expires_in=60,
    )


def presign_get(store: LocalStorage, key: str = "k") -> Any:
    return store.presign_get(key, filename="a.txt", content_type="text/plain", expires_in=60)


def token_of(url: str) -> str:
    return url.split("?token=", 1)[1]


def url_for(key: str, token: str) -> str:
    return f"http://testserver/store/{key}?token={token}"


async def store_object(store: LocalStorage, http: httpx.AsyncClient, key: str, data: bytes) -> None:
    request = store.presign_put(
        key, content_type="text/plain", size=len(data), checksum_sha256=None, expires_in=60
    )
    assert (await send(http, request, data)).status_code == 200


def assert_denied(response: httpx.Response, code: str = "url_invalid") -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == code


def with_claims(token: str, **changes: Any) -> str:
    """``token`` with its payload changed and its original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    for name in [name for name, value in changes.items() if value is None]:
        del claims[name]
    altered = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{altered}.{signature}"


# -- purpose (audience) -----------------------------------------------------------------------


async def test_an_upload_token_does_not_download(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    await store_object(local_store, local_http, "k", DATA)
    upload = presign_put(local_store, "k")
    response = await local_http.get(upload.url)
    assert_denied(response)
    assert DATA not in response.content
    assert (await local_http.head(upload.url)).status_code == 403
    assert (await send(local_http, presign_get(local_store, "k"))).content == DATA


async def test_a_download_token_does_not_upload(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    download = presign_get(local_store, "k")
    headers = presign_put(local_store, "k").headers
    response = await local_http.put(download.url, content=DATA, headers=headers)
    assert_denied(response)
    assert await local_store.stat("k") is None


def test_the_signer_checks_the_audience() -> None:
    signer = TokenSigner(SECRET)
    put_token = signer.sign_put(PutGrant("k", "text/plain", 3, None), IN_AN_HOUR)
    get_token = signer.sign_get(GetGrant("k", "a.txt", "text/plain"), IN_AN_HOUR)
    assert signer.verify_put(put_token, "k") == PutGrant("k", "text/plain", 3, None)
    assert signer.verify_get(get_token, "k") == GetGrant("k", "a.txt", "text/plain")
    with pytest.raises(TokenInvalid):
        signer.verify_get(put_token, "k")
    with pytest.raises(TokenInvalid):
        signer.verify_put(get_token, "k")


# -- one key ----------------------------------------------------------------------------------


@pytest.mark.parametrize("other", ["b", "K", "k2", "k/x", "k%20", "dir/k"])
async def test_an_upload_token_for_one_key_stores_nothing_under_another(
    local_store: LocalStorage, local_http: httpx.AsyncClient, other: str
) -> None:
    upload = presign_put(local_store, "k")
    response = await local_http.put(
        url_for(other, token_of(upload.url)), content=DATA, headers=upload.headers
    )
    assert_denied(response)
    assert await local_store.stat("k") is None
    assert list(local_store.objects.iterdir()) == []


async def test_a_download_token_for_one_key_opens_no_other(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    await store_object(local_store, local_http, "mine", b"mine")
    await store_object(local_store, local_http, "theirs", b"their secret")
    mine = presign_get(local_store, "mine")
    response = await local_http.get(url_for("theirs", token_of(mine.url)))
    assert_denied(response)
    assert b"their secret" not in response.content
    assert (await send(local_http, mine)).content == b"mine"


def test_the_signer_checks_the_key() -> None:
    signer = TokenSigner(SECRET)
    token = signer.sign_put(PutGrant("a", "text/plain", 3, None), IN_AN_HOUR)
    with pytest.raises(TokenInvalid, match="another key"):
        signer.verify_put(token, "b")


# -- altered, forged and expired tokens ----------------------------------------------------------

ALTERED_PUT = {
    "longer": {"len": len(DATA) + 100},
    "content-type": {"ct": "text/html"},
    "checksum-dropped": {"sha": None},
    "key": {"key": "other"},
    "later-expiry": {"exp": int((datetime.now(UTC) + timedelta(days=365)).timestamp())},
    "audience": {"aud": GET_AUDIENCE},
}


@pytest.mark.parametrize("changes", ALTERED_PUT.values(), ids=ALTERED_PUT.keys())
async def test_an_upload_token_with_altered_claims_is_refused(
    local_store: LocalStorage, local_http: httpx.AsyncClient, changes: dict[str, Any]
) -> None:
    upload = presign_put(local_store, "k", checksum=True)
    token = with_claims(token_of(upload.url), **changes)
    headers = dict(upload.headers)
    if "sha" in changes:
        del headers["x-amz-checksum-sha256"]
    response = await local_http.put(url_for("k", token), content=DATA, headers=headers)
    assert_denied(response)
    assert await local_store.stat("k") is None
    # the unaltered token still works: only the alteration was refused
    assert (
        await local_http.put(upload.url, content=DATA, headers=upload.headers)
    ).status_code == 200


ALTERED_GET = {
    "filename": {"fn": "invoice.exe"},
    "content-type": {"ct": "text/html"},
    "key": {"key": "other"},
    "audience": {"aud": PUT_AUDIENCE},
}


@pytest.mark.parametrize("changes", ALTERED_GET.values(), ids=ALTERED_GET.keys())
async def test_a_download_token_with_altered_claims_is_refused(
    local_store: LocalStorage, local_http: httpx.AsyncClient, changes: dict[str, Any]
) -> None:
    await store_object(local_store, local_http, "k", DATA)
    token = with_claims(token_of(presign_get(local_store, "k").url), **changes)
    response = await local_http.get(url_for("k", token))
    assert_denied(response)
    assert DATA not in response.content


def forged(claims: dict[str, Any], *, secret: str = SECRET, algorithm: str = "HS256") -> str:
    key = "" if algorithm == "none" else secret  # PyJWT signs "none" with an empty key
    return jwt.encode(claims, key, algorithm=algorithm)


def put_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "aud": PUT_AUDIENCE,
        "key": "k",
        "ct": "text/plain",
        "len": len(DATA),
        "exp": int(IN_AN_HOUR.timestamp()),
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


FORGED: dict[str, Callable[[], str]] = {
    "another-secret": lambda: forged(put_claims(), secret="not-the-secret-" + "y" * 40),
    "alg-none": lambda: forged(put_claims(), algorithm="none"),
    "no-expiry": lambda: forged(put_claims(exp=None)),
    "no-audience": lambda: forged(put_claims(aud=None)),
    "no-length": lambda: forged(put_claims(len=None)),
    "length-as-text": lambda: forged(put_claims(len=str(len(DATA)))),
    "no-content-type": lambda: forged(put_claims(ct=None)),
    "not-a-jwt": lambda: "not-a-token",
}


@pytest.mark.parametrize("make", FORGED.values(), ids=FORGED.keys())
async def test_a_forged_upload_token_is_refused(
    local_store: LocalStorage, local_http: httpx.AsyncClient, make: Callable[[], str]
) -> None:
    headers = presign_put(local_store, "k").headers
    response = await local_http.put(url_for("k", make()), content=DATA, headers=headers)
    assert_denied(response)
    assert await local_store.stat("k") is None


async def test_a_well_formed_token_with_our_secret_is_accepted(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    """The forgeries above differ from this one by a single thing each."""
    headers = presign_put(local_store, "k").headers
    response = await local_http.put(
        url_for("k", forged(put_claims())), content=DATA, headers=headers
    )
    assert response.status_code == 200, response.text


async def test_an_upload_url_without_a_token_is_refused(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    headers = presign_put(local_store, "k").headers
    response = await local_http.put("/store/k", content=DATA, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert await local_store.stat("k") is None


async def test_an_expired_token_is_refused_as_expired(
    local_store: LocalStorage,
    local_http: httpx.AsyncClient,
    set_clock: Callable[[datetime], None],
) -> None:
    await store_object(local_store, local_http, "stored", DATA)
    upload, download = presign_put(local_store, "k"), presign_get(local_store, "stored")
    assert (await send(local_http, download)).status_code == 200
    set_clock(datetime.now(UTC) + timedelta(hours=1))  # past both links' expiry
    assert_denied(await send(local_http, upload, DATA), "url_expired")
    assert_denied(await send(local_http, download), "url_expired")
    assert await local_store.stat("k") is None
    with pytest.raises(TokenExpired):
        local_store.signer.verify_put(token_of(upload.url), "k")


# -- headers signed into the token ------------------------------------------------------------


async def test_the_checksum_header_must_be_sent_as_signed(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    signed = presign_put(local_store, "k", checksum=True)
    unsigned = presign_put(local_store, "k")
    dropped = {k: v for k, v in signed.headers.items() if k != "x-amz-checksum-sha256"}
    added = {**unsigned.headers, "x-amz-checksum-sha256": signed.headers["x-amz-checksum-sha256"]}
    for url, headers in ((signed.url, dropped), (unsigned.url, added)):
        response = await local_http.put(url, content=DATA, headers=headers)
        assert_denied(response, "checksum_header_mismatch")
    assert await local_store.stat("k") is None


@pytest.mark.parametrize(
    "key", ["k", "uploads/alice/2026/11/ü ñ+%;&=?#~.bin", '日本語/😀 "quoted" \\ back']
)
@pytest.mark.parametrize("checksum", [None, "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="])
def test_tokens_are_pyjwts_byte_for_byte(key: str, checksum: str | None) -> None:
    """Made without PyJWT (a create's cost), each token is the one ``jwt.encode`` makes."""
    signer = TokenSigner(SECRET)
    expires = int(IN_AN_HOUR.timestamp())
    put = {"aud": PUT_AUDIENCE, "key": key, "ct": "text/plain; a=ü", "len": 5, "exp": expires}
    if checksum:
        put["sha"] = checksum
    made = signer.sign_put(PutGrant(key, "text/plain; a=ü", 5, checksum), IN_AN_HOUR)
    assert made == jwt.encode(put, SECRET, algorithm="HS256")
    get = {"aud": GET_AUDIENCE, "key": key, "fn": "ä b.txt", "ct": "text/plain", "exp": expires}
    made = signer.sign_get(GetGrant(key, "ä b.txt", "text/plain"), IN_AN_HOUR)
    assert made == jwt.encode(get, SECRET, algorithm="HS256")
    post = {"aud": POST_AUDIENCE, "key": key, "ct": "image/png", "max": 99, "exp": expires}
    made = signer.sign_post(PostGrant(key, "image/png", 99), IN_AN_HOUR)
    assert made == jwt.encode(post, SECRET, algorithm="HS256")
    assert signer.verify_put(signer.sign_put(PutGrant(key, "a/b", 1, None), IN_AN_HOUR), key)
