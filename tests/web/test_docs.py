"""``GET /docs``: Swagger UI served from the package; the page names no other origin."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bigupload.app import create_app
from bigupload.storage.local import LocalStorage
from tests.conftest import make_settings

DocsClient = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
EXPECTED_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@pytest.fixture
def docs_client(tmp_path: Path, local_store: LocalStorage) -> DocsClient:
    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", **overrides)
        app = create_app(settings, storage=local_store)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c
        finally:
            await app.state.engine.dispose()

    return make


def referenced_urls(html: str) -> list[str]:
    """Every URL the page loads or points at: src= and href= attributes, and the script's
    ``url: '...'`` (the OpenAPI document)."""
    attributes = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    config = re.findall(r"""\burl\s*:\s*['"]([^'"]+)['"]""", html)
    return attributes + config


@pytest.mark.parametrize("web_page", [True, False])
async def test_docs_reference_only_local_urls_that_answer(
    docs_client: DocsClient, web_page: bool
) -> None:
    async with docs_client(web_page=web_page) as client:
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
    docs_client: DocsClient,
) -> None:
    async with docs_client() as client:
        for path in ("build-info.json", "index.html", "../static/index.html", "assets/nope.js"):
            answer = await client.get(f"/docs/assets/{path}")
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found"
