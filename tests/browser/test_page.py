"""The uploader page at ``/``, in headless Chromium, against a real ``bigupload serve``.

Each test runs on the local store and on the strict S3 server (LocalStack, with a bucket CORS rule
for the page's origin). The service runs its jobs, so the live list (server-sent events) reaches
``completed`` only once processing checked the stored bytes. Every test saves screenshots in
test-artifacts/screenshots/.

The 150 MiB file is written once per session and sent whole only once per store: the test that
reloads the page mid-upload is also the big-file test. Uppy 6 sends the parts of one file one
after another; :class:`PartGate` holds a chosen part before it is sent, so the interruption
(reload, pause, cancel) happens at a known point with no race against a fast loopback. Holding
it before any byte is sent matters on LocalStack: it stores a part from a PUT cut off mid-body
(real S3 answers IncompleteBody), so a reload during a part would leave a short part that the
list-parts route reports and the completion then refuses.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.pageflow import (
    BIG_WAIT,
    CANCEL,
    PAUSE_RESUME,
    UPLOAD_BUTTON,
    WAIT,
    PartGate,
    Source,
    Traffic,
    add_files,
    click_upload,
    download_sha256,
    expect_status,
    make_source,
    open_page,
    part_number,
    row,
    saved_resume_state,
    sign_in,
    sign_in_as,
    uppy_file_uploaded,
)
from tests.browser.served import PageService, page_service

MiB = 1024 * 1024
STORES = ["local", pytest.param("s3-strict", marks=pytest.mark.strict_s3)]
#: Uppy 6's part size for files under 50 GB: S3's 5 MiB floor.
UPPY_PART_SIZE = 5 * MiB


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    """The files the browser sends, written once per session."""
    folder = tmp_path_factory.mktemp("sources")
    return {
        "small": make_source(folder / "small-notes.txt", 300 * 1024 + 7, text=True),
        # >= 150 MiB and not a whole number of parts: the last part is short.
        "big": make_source(folder / "big-recording.bin", 150 * MiB + 12_345),
        "too-big": make_source(folder / "too-big.txt", 2 * MiB, text=True),
        "wrong-type": make_source(folder / "picture.png", 4096),
    }


def _serve(request: pytest.FixtureRequest, folder: Path, **env: str) -> Iterator[PageService]:
    store: str = request.param
    strict = request.getfixturevalue("strict_s3") if store == "s3-strict" else None
    with page_service(folder / "data", store, strict, **env) as service:
        yield service


@pytest.fixture(scope="module", params=STORES)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PageService]:
    """One service per store for the module; each test signs in as fresh owners."""
    yield from _serve(request, tmp_path_factory.mktemp("service"))


@pytest.fixture(params=STORES)
def small_limits_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PageService]:
    """A service that takes files of at most 1 MiB, of two types only."""
    yield from _serve(
        request,
        tmp_path,
        BIGUPLOAD_MAX_FILE_SIZE="1MiB",
        BIGUPLOAD_ALLOWED_CONTENT_TYPES="text/plain,application/pdf",
    )


def session_cookie(context: Any) -> dict[str, str]:
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    assert "bigupload_session" in cookies, cookies
    return {"bigupload_session": cookies["bigupload_session"]}


def session_answer(service: PageService, cookie: dict[str, str]) -> httpx.Response:
    """``GET /api/v1/session`` with the cookie, as the page's own origin sends it (CSRF)."""
    with service.http() as http:
        http.cookies.update(cookie)
        return http.get("/api/v1/session", headers={"Origin": service.url})


# -- sign in, sign out ------------------------------------------------------------------------


def test_sign_in_refuses_a_wrong_key_then_shows_the_owner_and_an_empty_list(
    service: PageService, page: Any, screenshot: Any
) -> None:
    owner, key = service.new_key("alice")
    open_page(page, service.url)
    screenshot(page, "signin-form")

    sign_in(page, "bu_" + "x" * 43)
    error = page.locator("[data-testid=signin-error]")
    expect(error).to_be_visible(timeout=WAIT)
    expect(error).not_to_be_empty()
    expect(page.locator("[data-testid=owner]")).to_be_hidden()
    screenshot(page, "wrong-key")

    sign_in(page, key)
    expect(page.locator("[data-testid=owner]")).to_contain_text(owner, timeout=WAIT)
    expect(page.locator("[data-testid=files-empty]")).to_be_visible(timeout=WAIT)
    expect(page.locator("[data-testid=files] tr[data-file-id]")).to_have_count(0)
    expect(page.locator("[data-testid=limits]")).not_to_be_empty()
    expect(page.locator("#uploader .uppy-Dashboard")).to_be_visible()
    expect(page.locator("form[data-testid=signin]")).to_be_hidden()
    screenshot(page, "signed-in")


def test_sign_out_returns_to_sign_in_and_the_old_cookie_no_longer_works(
    service: PageService, context: Any, page: Any, screenshot: Any
) -> None:
    owner, key = service.new_key("alice")
    sign_in_as(page, service.url, key, owner)
    cookie = session_cookie(context)
    assert session_answer(service, cookie).status_code == 200
    screenshot(page, "signed-in")

    page.locator("[data-testid=signout]").click()
    expect(page.locator("form[data-testid=signin]")).to_be_visible(timeout=WAIT)
    expect(page.locator("[data-testid=owner]")).to_be_hidden()
    screenshot(page, "signed-out")

    answer = session_answer(service, cookie)
    assert answer.status_code == 401, answer.text
    assert "bigupload_session" not in {c["name"] for c in context.cookies()}
    page.reload()
    expect(page.locator("form[data-testid=signin]")).to_be_visible(timeout=WAIT)
    expect(page.locator("[data-testid=owner]")).to_be_hidden()


# -- uploads ----------------------------------------------------------------------------------


def test_small_and_big_uploads_survive_a_reload_resume_complete_and_download(
    service: PageService,
    sources: dict[str, Source],
    page: Any,
    screenshot: Any,
) -> None:
    small, big = sources["small"], sources["big"]
    parts = -(-big.size // UPPY_PART_SIZE)
    sent_before_reload = 3
    owner, key = service.new_key("alice")
    traffic = Traffic(page, service.url)
    sign_in_as(page, service.url, key, owner)
    expect(page.locator("[data-testid=files-empty]")).to_be_visible(timeout=WAIT)

    # Both files in one go; the big one's part 4 is held, so the reload lands mid-upload.
    gate = PartGate(page, through=sent_before_reload)
    add_files(page, [small, big])
    screenshot(page, "files-added")
    with page.expect_request(
        lambda r: r.method == "PUT" and part_number(r.url) == sent_before_reload + 1,
        timeout=BIG_WAIT,
    ):
        click_upload(page)
    uppy_file_uploaded(page, small.name, traffic)
    saved_resume_state(page, big.name)
    assert traffic.part_puts(status=200) == list(range(1, sent_before_reload + 1))
    assert len(traffic.route_calls("create")) == 1
    screenshot(page, "mid-upload")

    # Reload: Golden Retriever restores the Dashboard. The big file is over its IndexedDB
    # limit (10 MiB), so it comes back as a "ghost": Uppy says "Session restored ... Please
    # re-select it"; the page names the file in its messages and opens the file picker panel.
    gate.open()
    traffic.next_load()
    page.reload()
    expect(page.locator("[data-testid=owner]")).to_contain_text(owner, timeout=WAIT)
    ghost = page.locator("#uploader .uppy-Dashboard-Item.is-ghost")
    expect(ghost).to_have_count(1, timeout=WAIT)
    expect(ghost).to_contain_text(big.name)
    expect(page.locator("#uploader .uppy-Dashboard-serviceMsg")).to_contain_text("re-select")
    expect(page.locator("[data-testid=messages]")).to_contain_text(big.name)
    panel = page.locator("#uploader .uppy-Dashboard-AddFilesPanel")
    if not panel.is_visible():  # a person clicks the file's "Re-select" to open it
        page.locator("#uploader .uppy-Dashboard-Item-reSelect").click()
    expect(panel).to_be_visible()
    screenshot(page, "restored-asks-to-reselect")

    add_files(page, [big])
    expect(ghost).to_have_count(0, timeout=WAIT)
    screenshot(page, "reselected")
    click_upload(page)
    uppy_file_uploaded(page, big.name, traffic)

    # The list, live from the event stream, shows both files completed (processing ran).
    expect_status(page, small.name, "completed")
    expect_status(page, big.name, "completed")
    screenshot(page, "completed")

    # It resumed: the parts sent before the reload were not sent again.
    assert len(traffic.route_calls("list", load=1)) == 1, traffic.route_calls("list")
    assert all(seen.status == 200 for seen in traffic.route_calls("list", load=1))
    assert traffic.route_calls("create", load=1) == []
    assert traffic.part_puts(load=0) == list(range(1, sent_before_reload + 2))
    assert traffic.part_puts(load=0, status=200) == list(range(1, sent_before_reload + 1))
    after = traffic.part_puts(load=1)
    assert sorted(after) == list(range(sent_before_reload + 1, parts + 1)), after
    assert len(traffic.part_puts()) < 2 * parts
    assert [s.status for s in traffic.route_calls("complete")] == [200]
    # The small file was one form POST, sent once, before the reload.
    assert len(traffic.route_calls("params")) == 1
    assert [s.load for s in traffic.store_posts()] == [0]

    records = {r["filename"]: r for r in service.files(key)}
    assert set(records) == {small.name, big.name}
    assert records[big.name]["stored_size"] == big.size
    assert records[big.name]["checksum_sha256"] == big.sha256
    assert records[small.name]["stored_size"] == small.size
    assert records[small.name]["checksum_sha256"] == small.sha256

    for source in (small, big):
        digest, filename = download_sha256(page, source.name)
        assert digest == source.sha256, source.name
        assert filename == source.name
    screenshot(page, "downloaded")


def test_pause_resume_then_cancel_through_the_dashboard(
    service: PageService, sources: dict[str, Source], page: Any, screenshot: Any
) -> None:
    big = sources["big"]
    owner, key = service.new_key("alice")
    traffic = Traffic(page, service.url)
    sign_in_as(page, service.url, key, owner)

    # Pause while part 2 is on its way; part 1 is stored.
    gate = PartGate(page, through=1)
    add_files(page, [big])
    with page.expect_request(lambda r: r.method == "PUT" and part_number(r.url) == 2):
        click_upload(page)
    toggle = page.locator(PAUSE_RESUME)
    expect(toggle).to_have_attribute("title", "Pause")
    toggle.click()
    expect(toggle).to_have_attribute("title", "Resume", timeout=WAIT)
    screenshot(page, "paused")
    assert traffic.route_calls("list") == []

    # Resume: Uppy asks the service which parts it holds and goes on from part 2.
    gate.hold_after(3)
    with page.expect_request(
        lambda r: r.method == "PUT" and part_number(r.url) == 4, timeout=BIG_WAIT
    ):
        toggle.click()
    expect(toggle).to_have_attribute("title", "Pause")
    assert [s.status for s in traffic.route_calls("list")] == [200]
    assert traffic.part_puts(status=200) == [1, 2, 3]
    assert traffic.part_puts() == [1, 2, 2, 3, 4]
    screenshot(page, "resumed")

    # Cancel: the multipart upload is aborted at the store and the record says so, live.
    with page.expect_response(
        lambda r: r.request.method == "DELETE" and "/s3/multipart/" in r.url, timeout=WAIT
    ) as aborted:
        page.locator(CANCEL).click()
    assert aborted.value.status in (200, 204)
    expect(page.locator("#uploader .uppy-Dashboard-Item")).to_have_count(0, timeout=WAIT)
    expect_status(page, big.name, "aborted", timeout=WAIT)
    screenshot(page, "cancelled")
    (record,) = service.files(key)
    assert record["status"] == "aborted"
    assert len(traffic.route_calls("create")) == 1


def test_refused_files_show_a_readable_error_and_nothing_is_uploaded(
    small_limits_service: PageService, sources: dict[str, Source], page: Any, screenshot: Any
) -> None:
    service = small_limits_service
    owner, key = service.new_key("alice")
    traffic = Traffic(page, service.url)
    sign_in_as(page, service.url, key, owner)
    limits = page.locator("[data-testid=limits]")
    expect(limits).to_contain_text(re.compile(r"1(\.0)?\s*Mi?B"))
    screenshot(page, "limits-shown")

    # Uppy's informer or the page's own messages say why, naming the file or the allowed types.
    shown = page.locator("[data-testid=messages], #uploader .uppy-Informer")
    add_files(page, [sources["too-big"]])
    too_big = re.compile(r"too-big\.txt|exceeds maximum allowed size", re.I)
    expect(shown.filter(has_text=too_big)).not_to_have_count(0, timeout=WAIT)
    screenshot(page, "too-big")

    add_files(page, [sources["wrong-type"]])
    wrong_type = re.compile(r"picture\.png|you can only upload", re.I)
    expect(shown.filter(has_text=wrong_type)).not_to_have_count(0, timeout=WAIT)
    screenshot(page, "wrong-type")

    # Neither file was taken: no upload started, no record.
    expect(page.locator("#uploader .uppy-Dashboard-Item")).to_have_count(0)
    expect(page.locator(UPLOAD_BUTTON)).to_have_count(0)
    sent = [
        (s.method, s.url)
        for s in traffic.all()
        if "/s3/" in s.url or "/store" in s.url or "/api/v1/uploads" in s.url or s.method == "PUT"
    ]
    assert sent == []
    assert service.files(key) == []
    expect(page.locator("[data-testid=files-empty]")).to_be_visible()


def test_a_second_user_sees_an_empty_list_while_the_first_has_files(
    service: PageService, browser: Any, page: Any, screenshot: Any
) -> None:
    alice, alice_key = service.new_key("alice")
    bob, bob_key = service.new_key("bob")
    sign_in_as(page, service.url, alice_key, alice)
    expect(page.locator("[data-testid=files-empty]")).to_be_visible(timeout=WAIT)

    # Alice's file arrives while her page is open: the live list shows it, then completed.
    service.upload_over_api(alice_key, "alice-report.txt", b"alice's report\n" * 1000, "text/plain")
    expect_status(page, "alice-report.txt", "completed", timeout=WAIT)
    expect(page.locator("[data-testid=files-empty]")).to_be_hidden()
    screenshot(page, "alice")

    other = browser.new_context(viewport={"width": 1280, "height": 900})
    with contextlib.suppress(Exception):  # as the context fixture does
        other.grant_permissions(["local-network-access"])
    try:
        bob_page = other.new_page()
        sign_in_as(bob_page, service.url, bob_key, bob)
        expect(bob_page.locator("[data-testid=files-empty]")).to_be_visible(timeout=WAIT)
        expect(bob_page.locator("[data-testid=files] tr[data-file-id]")).to_have_count(0)
        expect(row(bob_page, "alice-report.txt")).to_have_count(0)
        screenshot(bob_page, "bob")
    finally:
        other.close()
    assert service.files(bob_key) == []
    assert [r["filename"] for r in service.files(alice_key)] == ["alice-report.txt"]
    # Alice's page still lists only her file.
    expect(row(page, "alice-report.txt")).to_have_count(1)
