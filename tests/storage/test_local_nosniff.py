"""Every answer of the local store's ``/store`` routes carries ``X-Content-Type-Options:
nosniff``: downloads (an uploaded "image" whose bytes are HTML must never render as a page),
uploads, refusals and preflights alike."""

from __future__ import annotations

import httpx

from bigupload.storage.local import LocalStorage
from tests.storage.helpers import send

HTML = b"<html><script>alert(1)</script></html>"


def assert_nosniff(response: httpx.Response) -> None:
    assert response.headers.get("x-content-type-options") == "nosniff", (
        response.status_code,
        dict(response.headers),
    )


async def test_downloads_and_uploads_carry_nosniff(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    put = local_store.presign_put(
        "k", content_type="image/png", size=len(HTML), checksum_sha256=None, expires_in=60
    )
    stored = await send(local_http, put, HTML)
    assert stored.status_code == 200, stored.text
    assert_nosniff(stored)
    get = local_store.presign_get("k", filename="cat.png", content_type="image/png", expires_in=60)
    for method in ("GET", "HEAD"):
        response = await local_http.request(method, get.url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert_nosniff(response)


async def test_refusals_and_preflights_carry_nosniff(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    get = local_store.presign_get("absent", filename="a", content_type="text/plain", expires_in=60)
    missing = await local_http.get(get.url)
    assert missing.status_code == 404
    assert_nosniff(missing)
    forged = await local_http.get("/store/k?token=nope")
    assert forged.status_code == 403
    assert_nosniff(forged)
    form = await local_http.post("/store", content=b"x", headers={"Content-Type": "text/plain"})
    assert form.status_code == 400
    assert_nosniff(form)
    preflight = await local_http.options(
        "/store/k",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"},
    )
    assert preflight.status_code == 204
    assert_nosniff(preflight)
    assert preflight.headers["access-control-allow-origin"] == "*"
