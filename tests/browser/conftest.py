"""Headless Chromium (Debian's ``chromium``) driven by Playwright, for the page and Uppy tests.

Playwright cannot download browsers here: it drives ``/usr/bin/chromium`` (installed by
``scripts/install-chromium.sh`` from ``make test``). Each test gets a fresh browser context
(no cookies, no storage) and saves a screenshot through :func:`screenshot`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("BIGUPLOAD_CHROMIUM", "/usr/bin/chromium")
#: Where every browser test leaves its screenshots (ignored by git; CI may keep them).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
#: The flags this machine's closed network needs (no background connections to Google).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module: Playwright's sync API runs an event loop in the main thread while it lives,
    and the asyncio tests collected after the browser tests need that thread's loop free."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-chromium.sh (make test does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh profile: no cookies, no local storage, no IndexedDB."""
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    # Chromium 156 may hold back a page's requests to loopback addresses without this.
    with contextlib.suppress(Exception):  # older Chromium builds do not know the permission
        ctx.grant_permissions(["local-network-access"])
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    page = context.new_page()
    page.on("pageerror", lambda exc: print(f"[page error] {exc}"))
    page.on("console", lambda msg: print(f"[console.{msg.type}] {msg.text}"))
    return page


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Any:
    """``screenshot(page, "step")`` saves ``test-artifacts/screenshots/<test>-<step>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def take(page: Any, step: str = "end") -> Path:
        path = SCREENSHOTS / f"{test}-{step}.png"
        page.evaluate("window.scrollTo(0, 0)")  # else the sticky header lands mid-image
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
