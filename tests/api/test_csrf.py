"""Requests with the session cookie must show they come from the page; bearer callers need not."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from tests.api.helpers import uploaded
from tests.api.session_helpers import SAME_ORIGIN, Signed, sign_in, sign_in_response
from tests.conftest import Caller

APP_ORIGIN = "https://app.example.com"
EVIL = "https://evil.example"

#: Requests of the page, each with an effect or a disclosure worth forging.
REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/files", None),
    ("GET", "/api/v1/session", None),
    ("POST", "/api/v1/uploads", {"filename": "a.txt", "content_type": "text/plain", "size": 3}),
    ("DELETE", "/api/v1/session", None),
]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"cors_origins": APP_ORIGIN}


@pytest.fixture
async def signed(alice: Caller) -> Signed:
    return await sign_in(alice.http, alice.key)


async def assert_csrf_failed(signed: Signed, headers: dict[str, str]) -> None:
    for method, url, body in REQUESTS:
        response = await signed.request(method, url, headers=headers, json=body)
        assert response.status_code == 403, (method, url, response.text)
        assert response.json()["error"]["code"] == "csrf_failed"
    # Nothing happened: no upload recorded, still signed in.
    files = await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)
    assert files.status_code == 200
    assert files.json()["items"] == []


async def test_the_cookie_alone_is_refused_for_a_change(signed: Signed) -> None:
    for method, url, body in REQUESTS:
        if method == "GET":
            continue
        response = await signed.request(method, url, json=body)
        assert response.status_code == 403, (method, url, response.text)
        assert response.json()["error"]["code"] == "csrf_failed"
    files = await signed.request("GET", "/api/v1/files", headers=SAME_ORIGIN)
    assert files.json()["items"] == []


async def test_a_get_without_fetch_metadata_passes(signed: Signed) -> None:
    """Browsers send no Sec-Fetch-Site to plain-HTTP origins other than localhost, and no
    Origin on a same-origin GET: the page's EventSource must still work there."""
    response = await signed.request("GET", "/api/v1/session")
    assert response.status_code == 200, response.text
    assert response.json()["owner"] == signed.info["owner"]


async def test_a_get_a_browser_marks_cross_site_is_refused(signed: Signed) -> None:
    response = await signed.request("GET", "/api/v1/files", headers={"Sec-Fetch-Site": "none"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "https://testserver"},  # another scheme is another origin
        {"Origin": "http://testserver:8080"},  # and so is another port
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "none"},
        {"Sec-Fetch-Site": "cross-site", "Origin": EVIL},
        {"X-CSRF-Token": "0" * 64},
        {"X-CSRF-Token": ""},
    ],
    ids=[
        "cross-site-origin",
        "null-origin",
        "lookalike-origin",
        "other-scheme",
        "other-port",
        "fetch-cross-site",
        "fetch-same-site",
        "fetch-none",
        "cross-site-both",
        "wrong-token",
        "empty-token",
    ],
)
async def test_a_cookie_without_valid_proof_is_403(signed: Signed, headers: dict[str, str]) -> None:
    await assert_csrf_failed(signed, headers)


async def test_a_token_that_is_not_ascii_is_403(signed: Signed) -> None:
    cookie = f"bigupload_session={signed.token}".encode()
    response = await signed.http.get(
        "/api/v1/files", headers=[(b"Cookie", cookie), (b"X-CSRF-Token", b"\xff" * 64)]
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"


async def test_the_token_of_another_session_is_refused(alice: Caller, bob: Caller) -> None:
    mine = await sign_in(alice.http, alice.key)
    other = await sign_in(alice.http, alice.key)
    bobs = await sign_in(bob.http, bob.key)
    for foreign in (other, bobs):
        response = await mine.request("GET", "/api/v1/files", headers=foreign.csrf)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "csrf_failed"


def _proofs(signed: Signed) -> dict[str, dict[str, str]]:
    return {
        "csrf-token": signed.csrf,
        "fetch-same-origin": SAME_ORIGIN,
        "own-origin": {"Origin": "http://testserver"},
        "own-origin-default-port": {"Origin": "http://testserver:80"},
        "cors-origin": {"Origin": APP_ORIGIN},
        # The browser may say cross-site, but the page is one the operator allowed.
        "cors-origin-cross-site": {"Origin": APP_ORIGIN, "Sec-Fetch-Site": "cross-site"},
    }


@pytest.mark.parametrize(
    "proof",
    [
        "csrf-token",
        "fetch-same-origin",
        "own-origin",
        "own-origin-default-port",
        "cors-origin",
        "cors-origin-cross-site",
    ],
)
async def test_each_proof_lets_the_cookie_through(
    app: FastAPI, signed: Signed, alice: Caller, proof: str
) -> None:
    headers = _proofs(signed)[proof]
    listing = await signed.request("GET", "/api/v1/files", headers=headers)
    assert listing.status_code == 200, listing.text
    created = await signed.request(
        "POST",
        "/api/v1/uploads",
        headers=headers,
        json={"filename": "a.txt", "content_type": "text/plain", "size": 3},
    )
    assert created.status_code == 201, created.text
    assert (await alice.get(f"/api/v1/files/{created.json()['id']}")).status_code == 200
    ended = await signed.request("DELETE", "/api/v1/session", headers=headers)
    assert ended.status_code == 204


async def test_a_delete_without_proof_deletes_nothing(signed: Signed, alice: Caller) -> None:
    record = await uploaded(alice, b"keep me")
    response = await signed.request("DELETE", f"/api/v1/files/{record['id']}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    assert (await alice.get(f"/api/v1/files/{record['id']}")).json()["status"] == "uploaded"
    allowed = await signed.request("DELETE", f"/api/v1/files/{record['id']}", headers=signed.csrf)
    assert allowed.status_code == 204


async def test_a_bearer_caller_is_never_checked(alice: Caller) -> None:
    for headers in ({"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {}):
        response = await alice.get("/api/v1/files", headers=headers)
        assert response.status_code == 200, response.text
        created = await alice.post(
            "/api/v1/uploads",
            headers=headers,
            json={"filename": "a.txt", "content_type": "text/plain", "size": 3},
        )
        assert created.status_code == 201, created.text


class TestPublicUrl:
    """Behind a proxy the request's own host may differ: the public URL's origin counts too."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"public_url": "https://uploads.example.com/base"}

    async def test_the_public_urls_origin_is_the_services_own(self, signed: Signed) -> None:
        ok = await signed.request(
            "GET", "/api/v1/files", headers={"Origin": "https://uploads.example.com"}
        )
        assert ok.status_code == 200, ok.text
        # No cors_origins here: the page of another origin is refused.
        refused = await signed.request("GET", "/api/v1/files", headers={"Origin": APP_ORIGIN})
        assert refused.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [{"Origin": EVIL}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["cross-site-origin", "null-origin", "fetch-cross-site"],
)
async def test_another_sites_page_cannot_sign_the_browser_in(
    alice: Caller, headers: dict[str, str]
) -> None:
    response = await sign_in_response(alice.http, alice.key, headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [{}, SAME_ORIGIN, {"Origin": "http://testserver"}, {"Origin": APP_ORIGIN}],
    ids=["not-a-browser", "fetch-same-origin", "own-origin", "cors-origin"],
)
async def test_sign_in_from_the_page_or_a_script_works(
    alice: Caller, headers: dict[str, str]
) -> None:
    await sign_in(alice.http, alice.key, headers)
