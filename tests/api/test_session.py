"""``/api/v1/session``: the web page signs in with an API key and works with a session cookie."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bigupload.auth import repository
from bigupload.auth.keys import hash_key
from bigupload.auth.models import WebSession
from bigupload.config import ConfigError, load_settings
from tests.api.helpers import start, uploaded
from tests.api.session_helpers import (
    COOKIE,
    SAME_ORIGIN,
    sign_in,
    sign_in_response,
)
from tests.conftest import TEST_BASE_URL, Caller
from tests.support.clock import Clock

CLEARED = f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"


async def sessions_in_registry(app: FastAPI) -> list[WebSession]:
    async with app.state.sessionmaker() as session:
        return list((await session.execute(select(WebSession))).scalars())


async def test_sign_in_sets_an_httponly_strict_cookie_and_answers_the_session(
    app: FastAPI, alice: Caller
) -> None:
    signed = await sign_in(alice.http, alice.key)
    assert signed.set_cookie == (
        f"{COOKIE}={signed.token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"
    )
    assert len(signed.token) == 43
    info = signed.info
    assert info["owner"] == "alice"
    assert info["key_name"] == "alice"
    assert isinstance(info["csrf_token"], str) and len(info["csrf_token"]) == 64
    assert info["csrf_token"] != signed.token
    expires = datetime.fromisoformat(info["expires_at"])
    assert (
        timedelta(hours=11, minutes=59)
        < expires - datetime.now(expires.tzinfo)
        <= timedelta(hours=12)
    )
    # The registry keeps the token's digest only.
    [stored] = await sessions_in_registry(app)
    assert stored.token_hash == hash_key(signed.token)
    assert stored.owner == "alice"
    assert stored.key_name == "alice"
    assert stored.revoked_at is None


async def test_two_sign_ins_are_two_sessions(alice: Caller) -> None:
    first = await sign_in(alice.http, alice.key)
    second = await sign_in(alice.http, alice.key)
    assert first.token != second.token
    assert first.info["csrf_token"] != second.info["csrf_token"]


async def test_the_session_answers_who_is_signed_in(alice: Caller) -> None:
    signed = await sign_in(alice.http, alice.key)
    response = await signed.request("GET", "/api/v1/session", headers=SAME_ORIGIN)
    assert response.status_code == 200, response.text
    assert response.json() == signed.info


async def test_a_bearer_caller_gets_the_session_without_csrf_token(alice: Caller) -> None:
    response = await alice.get("/api/v1/session")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["owner"] == "alice"
    assert body["key_name"] == "alice"
    assert body["csrf_token"] is None
    assert body["expires_at"] is None


async def test_without_cookie_or_key_the_session_is_401(alice: Caller) -> None:
    response = await alice.http.get("/api/v1/session")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("key", ["bu_" + "x" * 43, "not-a-key"], ids=["unknown", "malformed"])
async def test_a_bad_key_is_401_and_sets_no_cookie(app: FastAPI, alice: Caller, key: str) -> None:
    response = await sign_in_response(alice.http, key)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "set-cookie" not in response.headers
    assert await sessions_in_registry(app) == []


async def test_a_revoked_key_cannot_sign_in(app: FastAPI, alice: Caller) -> None:
    async with app.state.sessionmaker() as session, session.begin():
        assert await repository.revoke(session, "alice")
    response = await sign_in_response(alice.http, alice.key)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Field required"),
        ({"api_key": 123}, "Input should be a valid string"),
        ({"api_key": None}, "Input should be a valid string"),
        ({"api_key": ""}, "String should have at least 1 character"),
        ({"api_key": "x" * 257}, "String should have at most 256 characters"),
    ],
    ids=["missing", "number", "null", "empty", "too-long"],
)
async def test_an_invalid_body_is_422(alice: Caller, body: dict[str, Any], message: str) -> None:
    response = await alice.http.post("/api/v1/session", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == [{"field": "api_key", "message": message}]


async def test_an_unknown_field_is_422(alice: Caller) -> None:
    response = await alice.http.post(
        "/api/v1/session", json={"api_key": alice.key, "remember": True}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"] == [{"field": "remember", "message": "Extra inputs are not permitted"}]


async def test_sign_out_ends_the_session_at_once_and_clears_the_cookie(
    app: FastAPI, alice: Caller
) -> None:
    signed = await sign_in(alice.http, alice.key)
    assert (await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)).status_code == 200
    response = await signed.request("DELETE", "/api/v1/session", headers=signed.csrf)
    assert response.status_code == 204, response.text
    assert response.headers["set-cookie"] == CLEARED
    [stored] = await sessions_in_registry(app)
    assert stored.revoked_at is not None
    # The old cookie, replayed, is refused although the key cache would still hold it.
    for method, url in [("GET", "/api/v1/files"), ("DELETE", "/api/v1/session")]:
        replay = await signed.request(method, url, headers={**SAME_ORIGIN, **signed.csrf})
        assert replay.status_code == 401, replay.text
        assert replay.json()["error"]["code"] == "invalid_session"
        assert replay.headers["set-cookie"] == CLEARED


async def test_sign_out_as_a_bearer_caller_changes_nothing(app: FastAPI, alice: Caller) -> None:
    signed = await sign_in(alice.http, alice.key)
    response = await alice.delete("/api/v1/session")
    assert response.status_code == 204
    assert "set-cookie" not in response.headers
    still = await signed.request("GET", "/api/v1/session", headers=SAME_ORIGIN)
    assert still.status_code == 200


async def test_signing_out_one_session_keeps_the_others(alice: Caller) -> None:
    kept = await sign_in(alice.http, alice.key)
    ended = await sign_in(alice.http, alice.key)
    assert (
        await ended.request("DELETE", "/api/v1/session", headers=SAME_ORIGIN)
    ).status_code == 204
    assert (await kept.request("GET", "/api/v1/session", headers=SAME_ORIGIN)).status_code == 200


async def test_a_made_up_cookie_is_401(alice: Caller) -> None:
    for token in ["x" * 43, "x" * 5000]:
        response = await alice.http.get(
            "/api/v1/files", headers={"Cookie": f"{COOKIE}={token}", **SAME_ORIGIN}
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_session"


async def test_an_expired_session_is_401_session_expired(
    app: FastAPI, test_clock: Clock, alice: Caller
) -> None:
    signed = await sign_in(alice.http, alice.key)
    assert (await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)).status_code == 200
    test_clock.advance(hours=12, seconds=-1)
    assert (await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)).status_code == 200
    test_clock.advance(seconds=1)
    response = await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_expired"
    assert response.headers["set-cookie"] == CLEARED


async def test_signing_in_drops_the_keys_ended_sessions(
    app: FastAPI, test_clock: Clock, alice: Caller
) -> None:
    await sign_in(alice.http, alice.key)
    signed_out = await sign_in(alice.http, alice.key)
    await signed_out.request("DELETE", "/api/v1/session", headers=SAME_ORIGIN)
    test_clock.advance(hours=12)
    current = await sign_in(alice.http, alice.key)
    [stored] = await sessions_in_registry(app)
    assert stored.token_hash == hash_key(current.token)


async def test_revoking_the_key_ends_its_sessions_within_the_cache_time(
    app: FastAPI, test_clock: Clock, alice: Caller
) -> None:
    signed = await sign_in(alice.http, alice.key)
    assert (await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)).status_code == 200
    async with app.state.sessionmaker() as session, session.begin():
        assert await repository.revoke(session, "alice")
    assert (await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)).status_code == 200
    test_clock.advance(seconds=5)
    response = await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_session"


class TestWithoutCache:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"auth_cache_seconds": 0}

    async def test_revoking_the_key_ends_its_sessions_at_once(
        self, app: FastAPI, alice: Caller
    ) -> None:
        signed = await sign_in(alice.http, alice.key)
        ok = await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)
        assert ok.status_code == 200
        async with app.state.sessionmaker() as session, session.begin():
            assert await repository.revoke(session, "alice")
        response = await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_session"


async def test_the_cookie_works_on_the_api_as_its_owner(alice: Caller, bob: Caller) -> None:
    mine = await uploaded(alice, b"alice's file")
    await start(bob, b"bob's file")
    signed = await sign_in(alice.http, alice.key)
    listing = await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)
    assert listing.status_code == 200
    assert [item["id"] for item in listing.json()["items"]] == [mine["id"]]
    created = await signed.request(
        "POST",
        "/api/v1/uploads",
        headers=signed.csrf,
        json={"filename": "a.txt", "content_type": "text/plain", "size": 3},
    )
    assert created.status_code == 201, created.text
    record = await alice.get(f"/api/v1/files/{created.json()['id']}")
    assert record.json()["owner"] == "alice"


async def test_a_bearer_key_wins_over_the_cookie(alice: Caller, bob: Caller) -> None:
    signed = await sign_in(alice.http, alice.key)
    response = await signed.request("GET", "/api/v1/session", headers=bob.auth)
    assert response.json()["owner"] == "bob"
    bad = await signed.request(
        "GET", "/api/v1/session", headers={"Authorization": "Bearer bu_" + "x" * 43}
    )
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "invalid_api_key"


class TestLimitsAndCookieSettings:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {
            "max_file_size": "2GiB",
            "max_single_put_size": "64MiB",
            "multipart_threshold": "32MiB",
            "allowed_content_types": "video/*,application/pdf",
            "url_expiry_seconds": 600,
            "session_max_age_seconds": 3600,
            "session_cookie_secure": "always",
        }

    async def test_the_session_carries_the_limits(self, alice: Caller) -> None:
        signed = await sign_in(alice.http, alice.key)
        assert signed.info["limits"] == {
            "max_file_size": 2 * 1024**3,
            "max_single_put_size": 64 * 1024**2,
            "multipart_threshold": 32 * 1024**2,
            "allowed_content_types": ["video/*", "application/pdf"],
            "url_expiry_seconds": 600,
        }
        assert signed.set_cookie == (
            f"{COOKIE}={signed.token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600; Secure"
        )
        expires = datetime.fromisoformat(signed.info["expires_at"])
        assert expires - datetime.now(expires.tzinfo) <= timedelta(hours=1)


@pytest.mark.parametrize(
    ("setting", "public_url", "scheme", "secure"),
    [
        ("auto", TEST_BASE_URL, "https", True),
        ("auto", TEST_BASE_URL, "http", False),
        ("auto", "https://uploads.example.com", "http", True),  # behind a TLS-ending proxy
        ("never", "https://uploads.example.com", "https", False),
        ("always", TEST_BASE_URL, "http", True),
    ],
)
async def test_the_cookie_is_secure_as_configured(
    tmp_path: Any, database_url: str, setting: str, public_url: str, scheme: str, secure: bool
) -> None:
    from bigupload import migrate
    from bigupload.app import create_app
    from bigupload.db import create_engine
    from tests.conftest import make_key, make_settings

    settings = make_settings(
        tmp_path, database_url, session_cookie_secure=setting, public_url=public_url
    )
    engine = create_engine(settings.effective_database_url)
    await migrate.upgrade(engine)
    await engine.dispose()
    app = create_app(settings)
    try:
        key = await make_key(app, "alice")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://testserver") as c:
            signed = await sign_in(c, key)
        assert signed.set_cookie.endswith("; Secure") is secure
    finally:
        await app.state.engine.dispose()


class TestSignInRateLimit:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"session_rate_limit": "3/minute", "rate_limit": "off"}

    async def test_sign_in_attempts_are_limited_per_address(
        self, app: FastAPI, alice: Caller
    ) -> None:
        for _ in range(3):
            response = await sign_in_response(alice.http, "bu_" + "x" * 43)
            assert response.status_code == 401
        limited = await sign_in_response(alice.http, alice.key)
        assert limited.status_code == 429
        error = limited.json()["error"]
        assert error["code"] == "rate_limited"
        assert error["details"]["limit"] == "3 per 1 minute"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "set-cookie" not in limited.headers
        # The rest of the API is not counted, and another address still signs in.
        assert (await alice.get("/api/v1/files")).status_code == 200
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as other:
            await sign_in(other, alice.key)


@pytest.mark.parametrize("spec", ["lots", "5/fortnight"])
def test_an_invalid_sign_in_limit_is_a_configuration_error(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"BIGUPLOAD_SESSION_RATE_LIMIT: .* is not a rate limit"):
        load_settings(session_rate_limit=spec)
