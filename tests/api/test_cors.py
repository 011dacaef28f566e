"""CORS on the API: none by default; listed origins only, with credentials, on /api/ and /s3/."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bigupload.config import ConfigError, load_settings
from tests.conftest import Caller

ORIGIN = "https://app.example.com"
UNLISTED = "https://other.example.com"


def preflight_headers(origin: str, method: str = "POST", headers: str = "") -> dict[str, str]:
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        sent["Access-Control-Request-Headers"] = headers
    return sent


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.startswith("access-control-")
    }


class TestDefault:
    async def test_no_cors_headers_and_no_preflight_approval(self, alice: Caller) -> None:
        preflight = await alice.http.options(
            "/api/v1/files", headers=preflight_headers(ORIGIN, "GET", "authorization")
        )
        assert preflight.status_code == 405
        assert cors_headers(preflight) == {}
        response = await alice.get("/api/v1/files", headers={"Origin": ORIGIN})
        assert response.status_code == 200
        assert cors_headers(response) == {}


class TestConfigured:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"cors_origins": f"{ORIGIN}, https://second.example.com:8443"}

    @pytest.mark.parametrize("path", ["/api/v1/uploads", "/s3/multipart"])
    async def test_a_listed_origins_preflight_is_approved_with_credentials(
        self, alice: Caller, path: str
    ) -> None:
        response = await alice.http.options(
            path,
            headers=preflight_headers(ORIGIN, "POST", "authorization, content-type, x-csrf-token"),
        )
        assert response.status_code == 200, response.text
        headers = cors_headers(response)
        assert headers["access-control-allow-origin"] == ORIGIN
        assert headers["access-control-allow-credentials"] == "true"
        assert headers["access-control-allow-methods"] == "GET, POST, PUT, DELETE"
        allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
        assert {"Authorization", "Content-Type", "X-CSRF-Token", "Last-Event-ID", "Accept"} <= (
            allowed
        )
        assert headers["access-control-max-age"] == "600"

    async def test_the_second_origin_is_listed_too(self, alice: Caller) -> None:
        second = "https://second.example.com:8443"
        response = await alice.http.options(
            "/api/v1/files", headers=preflight_headers(second, "GET")
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == second

    async def test_a_method_outside_the_list_is_not_approved(self, alice: Caller) -> None:
        response = await alice.http.options(
            "/api/v1/files/x/status", headers=preflight_headers(ORIGIN, "PATCH")
        )
        assert response.status_code == 400
        assert "method" in response.text

    async def test_answers_to_a_listed_origin_carry_cors_headers(self, alice: Caller) -> None:
        response = await alice.get("/api/v1/files", headers={"Origin": ORIGIN})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in response.headers["vary"]
        assert "Retry-After" in response.headers["access-control-expose-headers"]
        # Errors too, so the page can read them.
        refused = await alice.http.get("/api/v1/files", headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == ORIGIN

    async def test_an_unlisted_origin_gets_nothing(self, alice: Caller) -> None:
        preflight = await alice.http.options(
            "/api/v1/files", headers=preflight_headers(UNLISTED, "GET")
        )
        assert preflight.status_code == 405
        assert cors_headers(preflight) == {}
        response = await alice.get("/api/v1/files", headers={"Origin": UNLISTED})
        assert response.status_code == 200
        assert cors_headers(response) == {}

    @pytest.mark.parametrize("origin", [ORIGIN + "/", "https://APP.example.com.evil", "null"])
    async def test_near_misses_get_nothing(self, alice: Caller, origin: str) -> None:
        response = await alice.get("/api/v1/files", headers={"Origin": origin})
        assert cors_headers(response) == {}


class TestOtherPaths:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        # The store's own CORS rule does not list the API's origin.
        return {"cors_origins": ORIGIN, "store_cors_origins": UNLISTED}

    @pytest.mark.parametrize("path", ["/health", "/store/some/key", "/apix/v1/files"])
    async def test_paths_outside_the_api_are_untouched(self, alice: Caller, path: str) -> None:
        preflight = await alice.http.options(path, headers=preflight_headers(ORIGIN, "PUT"))
        assert "access-control-allow-credentials" not in preflight.headers
        assert "access-control-allow-origin" not in preflight.headers
        response = await alice.http.get(path, headers={"Origin": ORIGIN})
        assert cors_headers(response) == {}


def test_a_wildcard_api_origin_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"BIGUPLOAD_CORS_ORIGINS: '\*' cannot be used"):
        load_settings(cors_origins="https://a.example.com,*")


def test_the_store_may_allow_any_origin() -> None:
    assert load_settings(store_cors_origins="*").store_cors_origins == ("*",)


@pytest.mark.parametrize("value", ["app.example.com", "https://app.example.com/path"])
def test_an_origin_that_is_not_one_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"BIGUPLOAD_CORS_ORIGINS: .* is not an origin"):
        load_settings(cors_origins=value)
