"""``GET /``: the web page and its assets, with the headers a page holding signed URLs needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from bigupload.web import endpoints
from bigupload.web.endpoints import STATIC_DIR
from tests.conftest import TEST_BASE_URL
from tests.web.conftest import PageClient


def csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    directives = (part.strip().split(None, 1) for part in policy.split(";") if part.strip())
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def built_assets() -> list[str]:
    html = (STATIC_DIR / "index.html").read_text()
    return re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)


async def test_the_page_is_served_with_its_security_headers(page_client: PageClient) -> None:
    async with page_client() as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = csp(response)
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["img-src"] == "'self' data: blob:"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert policy["form-action"] == "'self'"
    # The local store's URLs are under the public URL.
    assert policy["connect-src"] == f"'self' {TEST_BASE_URL}"
    assert 'data-testid="signin"' in response.text
    assert 'id="uploader"' in response.text


@pytest.mark.parametrize(
    ("overrides", "connect"),
    [
        ({"s3_endpoint_url": "http://127.0.0.1:9000"}, "'self' http://127.0.0.1:9000"),
        (
            {"s3_endpoint_url": "https://minio.example.com:9443/"},
            "'self' https://minio.example.com:9443",
        ),
        (
            {"s3_endpoint_url": "https://s3.example.com", "s3_addressing_style": "virtual"},
            "'self' https://s3.example.com https://*.s3.example.com",
        ),
        ({}, "'self' https://*.amazonaws.com"),
    ],
    ids=["endpoint", "endpoint-with-path", "virtual-hosts", "aws"],
)
async def test_connect_src_allows_the_s3_store(
    page_client: PageClient, overrides: dict[str, Any], connect: str
) -> None:
    settings = {"storage": "s3", "s3_bucket": "uploads", "s3_region": "us-east-1", **overrides}
    async with page_client(**settings) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert csp(response)["connect-src"] == connect


async def test_assets_are_cached_for_good(page_client: PageClient) -> None:
    assets = built_assets()
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    async with page_client() as client:
        for asset in assets:
            response = await client.get(asset)
            assert response.status_code == 200, asset
            assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.content == (STATIC_DIR / asset.lstrip("/")).read_bytes()
            expected = "text/javascript" if asset.endswith(".js") else "text/css"
            assert response.headers["content-type"].startswith(expected)


async def test_the_icon_is_served(page_client: PageClient) -> None:
    async with page_client() as client:
        for path in ("/favicon.svg", "/favicon.ico"):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/svg+xml"
            assert response.content.startswith(b"<svg")


@pytest.mark.parametrize(
    "path",
    [
        "/assets/missing-0000.js",
        "/assets/",
        "/assets/..%2Fbuild-info.json",
        "/assets/%2e%2e/build-info.json",
        "/assets/%2e%2e%2findex.html",
        "/assets/..%5Cbuild-info.json",
        "/assets/%2Fetc%2Fpasswd",
        "/assets/.%2F..%2F..%2F__init__.py",
    ],
)
async def test_nothing_outside_the_assets_is_served(page_client: PageClient, path: str) -> None:
    async with page_client() as client:
        response = await client.get(path)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


async def test_no_page_when_turned_off(page_client: PageClient) -> None:
    async with page_client(web_page=False) as client:
        for path in ["/", "/favicon.ico", *built_assets()]:
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        # The API itself is still there.
        assert (await client.get("/api/v1/files")).status_code == 401


async def test_a_missing_build_says_how_to_make_it(
    page_client: PageClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-build"
    empty.mkdir()
    monkeypatch.setattr(endpoints, "STATIC_DIR", empty)
    monkeypatch.setattr(endpoints, "ASSETS_DIR", empty / "assets")
    async with page_client() as client:
        response = await client.get("/")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/plain")
    assert "make web" in response.text
