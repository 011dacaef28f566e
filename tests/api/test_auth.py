"""Every ``/api/v1`` route needs a valid key, and a caller reaches only its own files."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from bigupload import clock
from bigupload.auth import repository
from tests.api.helpers import start, upload_request, uploaded
from tests.conftest import Caller

ROUTES = [
    ("POST", "/api/v1/uploads"),
    ("POST", "/api/v1/uploads/{id}/complete"),
    ("GET", "/api/v1/files"),
    ("GET", "/api/v1/files/{id}"),
    ("GET", "/api/v1/files/{id}/download"),
    ("PUT", "/api/v1/files/{id}/status"),
    ("DELETE", "/api/v1/files/{id}"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "unauthenticated"),
        ("Bearer", "unauthenticated"),
        ("Basic YWxpY2U6c2VjcmV0", "unauthenticated"),
        ("Bearer bu_not-a-real-key", "invalid_api_key"),
        ("Bearer " + "a" * 5000, "invalid_api_key"),
    ],
    ids=["none", "empty-bearer", "basic", "unknown-key", "huge-key"],
)
async def test_requests_without_a_valid_key_are_401(
    alice: Caller, method: str, path: str, header: str | None, code: str
) -> None:
    ticket = await start(alice, b"abc")
    headers = {"Authorization": header} if header else {}
    response = await alice.http.request(
        method,
        path.format(id=ticket["id"]),
        headers=headers,
        json={"status": "failed"} if method == "PUT" else upload_request(b"abc"),
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["www-authenticate"] == "Bearer"
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"


async def test_a_revoked_key_stops_working_within_the_cache_time(
    app: FastAPI, alice: Caller
) -> None:
    assert (await alice.get("/api/v1/files")).status_code == 200  # now cached for 5 s
    async with app.state.sessionmaker() as session, session.begin():
        assert await repository.revoke(session, "alice")
    assert (await alice.get("/api/v1/files")).status_code == 200
    clock.set_clock(lambda: datetime.now(UTC) + timedelta(seconds=5.5))
    try:
        response = await alice.get("/api/v1/files")
    finally:
        clock.set_clock(None)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


class TestWithoutKeyCache:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"auth_cache_seconds": 0}

    async def test_a_revoked_key_stops_working_at_once(self, app: FastAPI, alice: Caller) -> None:
        assert (await alice.get("/api/v1/files")).status_code == 200
        async with app.state.sessionmaker() as session, session.begin():
            assert await repository.revoke(session, "alice")
        response = await alice.get("/api/v1/files")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"


async def test_an_unknown_key_is_never_cached(app: FastAPI, alice: Caller) -> None:
    for _ in range(2):
        response = await alice.http.get(
            "/api/v1/files", headers={"Authorization": "Bearer bu_" + "x" * 43}
        )
        assert response.status_code == 401
    assert len(app.state.key_cache._entries) == 0


@pytest.mark.parametrize(("method", "path"), ROUTES[1:])
async def test_another_owners_file_is_404(
    alice: Caller, bob: Caller, method: str, path: str
) -> None:
    record = await uploaded(alice, b"alice's secret")
    if path == "/api/v1/files":
        return
    response = await bob.http.request(
        method,
        path.format(id=record["id"]),
        headers=bob.auth,
        json={"status": "failed"} if method == "PUT" else None,
    )
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "file_not_found"
    mine = await alice.get(f"/api/v1/files/{record['id']}")
    assert mine.status_code == 200
    assert mine.json()["status"] == "uploaded"


async def test_a_missing_file_looks_like_another_owners(bob: Caller) -> None:
    response = await bob.get(f"/api/v1/files/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "file_not_found"


async def test_lists_show_only_the_callers_files(alice: Caller, bob: Caller) -> None:
    mine = {(await start(alice, b"a"))["id"], (await start(alice, b"b"))["id"]}
    theirs = (await start(bob, b"c"))["id"]
    alice_ids = {item["id"] for item in (await alice.get("/api/v1/files")).json()["items"]}
    bob_ids = {item["id"] for item in (await bob.get("/api/v1/files")).json()["items"]}
    assert alice_ids == mine
    assert bob_ids == {theirs}


async def test_two_keys_of_one_owner_share_files(app: FastAPI, alice: Caller) -> None:
    from tests.conftest import make_key

    second = Caller(alice.http, await make_key(app, "alice-laptop", owner="alice"), "alice")
    record = await uploaded(alice, b"shared")
    response = await second.get(f"/api/v1/files/{record['id']}")
    assert response.status_code == 200
    assert response.json()["owner"] == "alice"


async def test_malformed_file_id_is_422(alice: Caller) -> None:
    response = await alice.get("/api/v1/files/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_a_cached_key_opens_no_registry_session(app: FastAPI, alice: Caller) -> None:
    """Authentication by a cached key costs no registry session: only a cache miss opens one
    (its own, for the lookup). ``GET /api/v1/session`` itself needs no registry."""
    assert (await alice.get("/api/v1/session")).status_code == 200  # the key is now cached
    sessionmaker = app.state.sessionmaker
    opened: list[object] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        session = sessionmaker(*args, **kwargs)
        opened.append(session)
        return session

    app.state.sessionmaker = counting
    try:
        assert (await alice.get("/api/v1/session")).status_code == 200
        assert opened == []
        app.state.key_cache.clear()
        assert (await alice.get("/api/v1/session")).status_code == 200  # a miss: looked up
        assert len(opened) == 1
    finally:
        app.state.sessionmaker = sessionmaker
