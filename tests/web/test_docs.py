"""``GET /docs``: Swagger UI served from the package; the page names no other origin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.web.conftest import PageClient

EXPECTED_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def referenced_urls(html: str) -> list[str]:
    """Every URL the page loads or points at: src= and href= attributes, and the script's
    ``url: '...'`` (the OpenAPI document)."""
    attributes = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    config = re.findall(r"""\burl\s*:\s*['"]([^'"]+)['"]""", html)
    return attributes + config


@pytest.mark.parametrize("web_page", [True, False])
async def test_docs_reference_only_local_urls_that_answer(
    page_client: PageClient, web_page: bool
) -> None:
    async with page_client(web_page=web_page) as client:
        page = await client.get("/docs")
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        urls = referenced_urls(page.text)
        assert len(urls) >= 4, page.text  # the script, the style sheet, the icon, the document
        assert not re.search(r"https?://|//cdn|jsdelivr|unpkg", page.text), page.text
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), url
            answer = await client.get(url)
            assert answer.status_code == 200, (url, answer.text[:200])
            if url == "/openapi.json":
                assert answer.json()["info"]["title"] == "bigupload"
                continue
            suffix = Path(url).suffix
            assert answer.headers["content-type"].startswith(EXPECTED_TYPES[suffix]), url
            assert answer.headers["x-content-type-options"] == "nosniff"
        [script] = [u for u in urls if u.endswith(".js")]
        assert b"SwaggerUIBundle" in (await client.get(script)).content


async def test_only_the_listed_files_are_served_under_docs_assets(
    page_client: PageClient,
) -> None:
    async with page_client() as client:
        for path in ("build-info.json", "index.html", "../static/index.html", "assets/nope.js"):
            answer = await client.get(f"/docs/assets/{path}")
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"
