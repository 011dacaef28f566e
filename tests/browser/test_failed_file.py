"""A file the server fails after Uppy sent it shows as failed in the Dashboard, with why.

Uppy says "Complete" once the bytes are stored; with ``BIGUPLOAD_CONTENT_TYPE_CHECK=strict`` the
service's processing then fails a ``.png`` of random bytes (not a PNG). The page hears it on the
live feed and turns the file's Uppy entry (and the status bar) to an error naming the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.pageflow import (
    BIG_WAIT,
    WAIT,
    Source,
    Traffic,
    add_files,
    click_upload,
    expect_status,
    make_source,
    row,
    sign_in_as,
)
from tests.browser.served import PageService, page_service


@pytest.fixture
def strict_service(tmp_path: Path) -> Iterator[PageService]:
    with page_service(tmp_path / "data", "local", BIGUPLOAD_CONTENT_TYPE_CHECK="strict") as svc:
        yield svc


@pytest.fixture
def not_a_png(tmp_path: Path) -> Source:
    return make_source(tmp_path / "holiday.png", 4096)  # random bytes, declared image/png


def test_a_file_failed_by_processing_is_shown_failed_not_complete(
    strict_service: PageService, not_a_png: Source, page: Any, screenshot: Any
) -> None:
    service = strict_service
    owner, key = service.new_key("carol")
    traffic = Traffic(page, service.url)
    sign_in_as(page, service.url, key, owner)
    expect(page.locator("[data-testid=files-empty]")).to_be_visible(timeout=WAIT)

    add_files(page, [not_a_png])
    click_upload(page)
    expect_status(page, not_a_png.name, "failed", timeout=BIG_WAIT)
    [record] = service.files(key)
    assert record["status"] == "failed" and record["error"], (record, traffic.refusals())

    # The Dashboard's item and status bar say it failed, and why; nothing says complete.
    item = page.locator("#uploader .uppy-Dashboard-Item")
    expect(item).to_have_count(1)
    expect(item).to_have_class(re.compile(r"\bis-error\b"), timeout=WAIT)
    expect(page.locator("#uploader .uppy-StatusBar")).to_have_class(
        re.compile(r"\bis-error\b"), timeout=WAIT
    )
    error = page.evaluate(
        "name => String(window.bigupload.uppy.getFiles().find(f => f.name === name).error)",
        not_a_png.name,
    )
    assert error.startswith("Failed on the server: "), error
    assert record["error"][:20] in error, (error, record["error"])
    messages = page.locator("[data-testid=messages]")
    expect(messages).to_contain_text(f"“{not_a_png.name}” failed", timeout=WAIT)
    expect(row(page, not_a_png.name)).to_contain_text("failed")
    screenshot(page, "failed-after-upload")
