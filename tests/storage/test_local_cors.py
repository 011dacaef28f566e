"""The local store's CORS: its ``/store`` routes answer preflights themselves and put
``Access-Control-Allow-Origin`` (per ``settings.store_cors_origins``) and the headers an uploader
reads on every answer, errors included, without the service's CORS middleware.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bigupload.storage.local import LocalStorage
from tests.conftest import make_settings
from tests.storage.helpers import TEST_BASE_URL, error_code, local_app, send, tampered

ORIGIN = "https://app.example.com"
EXPOSED = "ETag, Location, x-amz-checksum-sha256, Content-Length, Content-Disposition"
KeyMaker = Callable[..., str]
DATA = b"some bytes"


@pytest.fixture
def origins() -> tuple[str, ...]:
    return ("*",)


@pytest.fixture
async def cors_http(
    local_store: LocalStorage, tmp_path: Path, origins: tuple[str, ...]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, "sqlite+aiosqlite://", store_cors_origins=origins)
    transport = httpx.ASGITransport(app=local_app(local_store, settings))
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as client:
        yield client


def preflight_headers(method: str, requested: str | None = None, origin: str = ORIGIN) -> Any:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if requested is not None:
        headers["Access-Control-Request-Headers"] = requested
    return headers


def cors_of(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def put_url(store: LocalStorage, key: str) -> tuple[str, dict[str, str]]:
    request = store.presign_put(
        key, content_type="text/plain", size=len(DATA), checksum_sha256=None, expires_in=600
    )
    return request.url, request.headers


# -- preflights -------------------------------------------------------------------------------


async def test_a_preflight_for_a_put_is_allowed_for_any_origin_by_default(
    local_store: LocalStorage, cors_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    url, _ = put_url(local_store, new_key())
    requested = "content-type,if-none-match,x-amz-checksum-sha256"
    response = await cors_http.options(url, headers=preflight_headers("PUT", requested))
    assert response.status_code == 204
    assert cors_of(response) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET, HEAD, PUT, POST",
        "access-control-allow-headers": requested,
        "access-control-max-age": "3000",
    }
    assert "vary" not in response.headers


@pytest.mark.parametrize("origins", [(ORIGIN, "https://other.example")])
async def test_a_preflight_for_a_form_post_echoes_a_listed_origin(
    cors_http: httpx.AsyncClient,
) -> None:
    response = await cors_http.options("/store", headers=preflight_headers("POST"))
    assert response.status_code == 204
    assert cors_of(response) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-methods": "GET, HEAD, PUT, POST",
        "access-control-max-age": "3000",
    }
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize("origins", [(ORIGIN,)])
async def test_a_preflight_from_an_unlisted_origin_gets_no_cors_headers(
    local_store: LocalStorage, cors_http: httpx.AsyncClient
) -> None:
    headers = preflight_headers("PUT", "content-type", origin="https://evil.example")
    response = await cors_http.options("/store/uploads/a/b", headers=headers)
    assert (response.status_code, error_code(local_store, response)) == (403, "cors_forbidden")
    assert cors_of(response) == {}
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize("origins", [()])
async def test_no_origin_is_allowed_when_none_is_listed(
    local_store: LocalStorage, cors_http: httpx.AsyncClient
) -> None:
    response = await cors_http.options("/store", headers=preflight_headers("POST"))
    assert (response.status_code, error_code(local_store, response)) == (403, "cors_forbidden")
    assert cors_of(response) == {}


@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
async def test_a_preflight_for_a_method_the_store_does_not_take_is_refused(
    local_store: LocalStorage, cors_http: httpx.AsyncClient, method: str
) -> None:
    response = await cors_http.options("/store/uploads/a/b", headers=preflight_headers(method))
    assert (response.status_code, error_code(local_store, response)) == (403, "cors_forbidden")
    assert cors_of(response) == {}


async def test_an_options_request_that_is_no_preflight_says_what_the_store_takes(
    cors_http: httpx.AsyncClient,
) -> None:
    response = await cors_http.options("/store/uploads/a/b")
    assert response.status_code == 204
    assert response.headers["allow"] == "GET, HEAD, PUT, POST, OPTIONS"
    assert cors_of(response) == {}


# -- real answers -----------------------------------------------------------------------------


async def test_a_put_and_a_get_expose_the_headers_an_uploader_reads(
    local_store: LocalStorage, cors_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    url, headers = put_url(local_store, key)
    response = await cors_http.put(url, content=DATA, headers={**headers, "Origin": ORIGIN})
    assert response.status_code == 200, response.text
    assert cors_of(response) == {
        "access-control-allow-origin": "*",
        "access-control-expose-headers": EXPOSED,
    }
    get = local_store.presign_get(key, filename="a.txt", content_type="text/plain", expires_in=60)
    response = await send(cors_http, get)
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers
    response = await cors_http.get(get.url, headers={"Origin": ORIGIN})
    assert (response.status_code, response.content) == (200, DATA)
    assert cors_of(response)["access-control-allow-origin"] == "*"
    assert cors_of(response)["access-control-expose-headers"] == EXPOSED


@pytest.mark.parametrize("origins", [(ORIGIN,)])
async def test_an_error_answer_carries_the_cors_headers_too(
    local_store: LocalStorage, cors_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    """Else a browser shows a network error instead of the store's refusal."""
    url, headers = put_url(local_store, new_key())
    forged = tampered(local_store, url)
    response = await cors_http.put(forged, content=DATA, headers={**headers, "Origin": ORIGIN})
    assert (response.status_code, error_code(local_store, response)) == (403, "url_invalid")
    assert cors_of(response) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-expose-headers": EXPOSED,
    }
    assert response.headers["vary"] == "Origin"
    # a missing token (FastAPI's validation answer) too
    response = await cors_http.put("/store/uploads/a/b", content=DATA, headers={"Origin": ORIGIN})
    assert response.status_code == 422
    assert cors_of(response)["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize("origins", [(ORIGIN,)])
async def test_an_unlisted_origin_gets_the_answer_without_cors_headers(
    local_store: LocalStorage, cors_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    url, headers = put_url(local_store, new_key())
    other = {**headers, "Origin": "https://evil.example"}
    response = await cors_http.put(url, content=DATA, headers=other)
    assert response.status_code == 200  # the URL is the credential; the browser hides it
    assert cors_of(response) == {}
    assert response.headers["vary"] == "Origin"


async def test_a_form_post_exposes_its_etag_and_location(
    local_store: LocalStorage, cors_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    post = local_store.presign_post(key, content_type="text/plain", max_size=99, expires_in=60)
    response = await cors_http.post(
        post.url,
        data=post.fields,
        files={"file": ("a.txt", DATA, "text/plain")},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 204, response.text
    assert cors_of(response) == {
        "access-control-allow-origin": "*",
        "access-control-expose-headers": EXPOSED,
    }
    assert response.headers["etag"] and response.headers["location"]


# -- in the service ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"store_cors_origins": (ORIGIN,)}])
async def test_the_service_answers_the_store_cors_from_its_settings(
    app: FastAPI, http: httpx.AsyncClient, local_store: LocalStorage, new_key: KeyMaker
) -> None:
    """Through the whole application: the settings are ``app.state.settings``."""
    assert app.state.storage is local_store
    key = new_key()
    response = await http.options("/store", headers=preflight_headers("POST"))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN

    post = local_store.presign_post(key, content_type="text/plain", max_size=99, expires_in=60)
    response = await http.post(
        post.url,
        data=post.fields,
        files={"file": ("a.txt", DATA, "text/plain")},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 204, response.text
    assert cors_of(response) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-expose-headers": EXPOSED,
    }
    stored = await local_store.stat(key)
    assert stored is not None and stored.size == len(DATA)
    response = await http.options("/store", headers=preflight_headers("POST", origin="https://x.y"))
    assert (response.status_code, response.json()["error"]["code"]) == (403, "cors_forbidden")
