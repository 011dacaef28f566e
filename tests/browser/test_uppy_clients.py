"""An unmodified Uppy 5.x and 6.x (from npm) in Chromium, uploading through bigupload's /s3 routes.

5.x is configured as its users do (``endpoint`` + ``headers`` with a bearer key), 6.x as its users
do (``companionEndpoint`` only: the page's session cookie is its credential). For every upload the
stored object is read back through the API's download link and compared with the source, and the
record is followed to ``completed`` by the job runner.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.browser.uppy_harness import (
    GENERATIONS,
    Harness,
    PartGate,
    download_sha256,
    ensure_harness_built,
    find_record,
    list_records,
    multipart_uploads,
    part_number,
    uppy_service,
    wait_for_record,
)
from tests.support.service import Service

MiB = 1024 * 1024
PART = 5 * MiB  # what both generations pick for a file this size (S3's minimum part)
#: Three full parts and a short last one.
MULTIPART_SIZE = 3 * PART + 1_234_567
SINGLE_SIZE = 300_000
OCTETS = "application/octet-stream"

LOCAL = "local"
STRICT = pytest.param("s3-strict", marks=pytest.mark.strict_s3)
BOTH_STORES = [LOCAL, STRICT]


@pytest.fixture(scope="module", autouse=True)
def _harness_built() -> None:
    ensure_harness_built()


@pytest.fixture(params=GENERATIONS)
def generation(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store() -> str:
    return LOCAL  # parametrised per test where more than the local store runs


@pytest.fixture
def service(
    request: pytest.FixtureRequest, tmp_path: Path, store: str, settings_overrides: dict[str, Any]
) -> Iterator[Service]:
    with uppy_service(request, tmp_path, store, **settings_overrides) as live:
        yield live


@pytest.fixture
def harness(page: Any, service: Service, generation: str) -> Harness:
    # 6.x can only authenticate with the session cookie: sign in as the page does.
    return Harness.open(page, service, generation, sign_in=generation == "v6")


def random_file(tmp_path: Path, name: str, size: int) -> tuple[Path, str]:
    path = tmp_path / name
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return path, digest.hexdigest()


def assert_stored(service: Service, name: str, sha256: str, size: int) -> dict[str, Any]:
    """The record reaches ``completed`` with the right size, and the stored bytes are the
    source's."""
    record = find_record(service, name)
    record = wait_for_record(service, record["id"], {"completed"})
    assert record["status"] == "completed", record
    assert record["stored_size"] == size, record
    assert download_sha256(service, record["id"]) == (sha256, size)
    return record


def object_url(service: Service, key: str) -> str:
    """The object's URL in the store: ``/store/<key>`` on the local store, path-style on S3."""
    settings = service.settings
    if settings.storage == "s3":
        return f"{settings.s3_endpoint_url}/{settings.s3_bucket}/{quote(key, safe='/')}"
    return f"{settings.effective_public_url}/store/{quote(key, safe='/')}"


def complete_body(harness: Harness) -> dict[str, Any]:
    (request,) = harness.s3_requests("POST", "multipart/")
    assert request.url.split("?")[0].endswith("/complete"), request.url
    body: dict[str, Any] = json.loads(request.post_data)
    return body


def assert_etags_as_sent(generation: str, parts: list[dict[str, Any]]) -> None:
    """5.x sends the ETags as the store gave them (quoted), 6.x strips the quotes."""
    etags = [part["ETag"] for part in parts]
    if generation == "v5":
        assert all(e.startswith('"') and e.endswith('"') for e in etags), etags
    else:
        assert not any('"' in e for e in etags), etags


# -- single upload: GET /s3/params answers a POST form ------------------------------------------


@pytest.mark.parametrize("store", BOTH_STORES)
def test_single_upload(
    harness: Harness, service: Service, generation: str, screenshot: Any
) -> None:
    harness.start(shouldUseMultipart=False)
    data = os.urandom(SINGLE_SIZE)
    name = f"single-{generation}.bin"
    file_id = harness.add_bytes(name, data, OCTETS)
    harness.upload()

    done = harness.wait_event("complete")
    screenshot(harness.page, "done")
    assert done["successful"] == [file_id], harness.summary()
    success = harness.wait_event("upload-success", fileID=file_id)

    (params,) = harness.s3_requests("GET", "params")
    assert params.response().status == 200
    form = params.response().json()
    assert form["method"] == "POST" and form["fields"]["key"], form
    (post,) = harness.store_posts()
    assert post.url == form["url"]
    assert post.response().status in (200, 201, 204)
    assert harness.s3_requests("POST", "multipart", exact=True) == []  # no multipart route
    assert harness.part_puts() == []

    record = assert_stored(service, name, hashlib.sha256(data).hexdigest(), SINGLE_SIZE)
    assert record["key"] == form["fields"]["key"]
    # 5.x reports the store's Location header, 6.x the form URL + key: the same URL.
    assert success["response"]["uploadURL"] == post.response().headers["location"], success


# -- multipart: create, sign each part, complete -------------------------------------------------


@pytest.mark.parametrize("store", BOTH_STORES)
def test_multipart_upload(
    harness: Harness, service: Service, generation: str, tmp_path: Path, screenshot: Any
) -> None:
    harness.start(shouldUseMultipart=True)
    path, sha256 = random_file(tmp_path, f"multipart-{generation}.bin", MULTIPART_SIZE)
    file_id = harness.add_path(path)
    harness.upload()

    done = harness.wait_event("complete")
    screenshot(harness.page, "done")
    assert done["successful"] == [file_id], harness.summary()
    success = harness.wait_event("upload-success", fileID=file_id)

    created = harness.created()
    assert created["key"] and created["uploadId"], created
    assert sorted(part_number(r.url) for r in harness.part_puts()) == [1, 2, 3, 4]
    body = complete_body(harness)
    assert [p["PartNumber"] for p in body["parts"]] == [1, 2, 3, 4]
    assert_etags_as_sent(generation, body["parts"])
    uploaded = [e["ETag"] for e in harness.events("part-uploaded")]
    assert sorted(p["ETag"] for p in body["parts"]) == sorted(uploaded)

    record = assert_stored(service, path.name, sha256, MULTIPART_SIZE)
    assert record["key"] == created["key"]
    # complete answers the object's URL in the store as `location` (as S3 and Companion do, and
    # as a single upload's form POST does): Uppy reports it as the upload URL.
    assert success["response"]["uploadURL"] == object_url(service, record["key"])
    assert multipart_uploads(service) == []


# -- pause mid-multipart, then resume: it continues from the parts the store holds ---------------


@pytest.mark.parametrize("store", BOTH_STORES)
def test_pause_and_resume_multipart(
    harness: Harness, service: Service, generation: str, tmp_path: Path, screenshot: Any
) -> None:
    gate = PartGate(harness.page)  # parts 2.. wait in the network until the test lets them go
    harness.start(shouldUseMultipart=True)
    path, sha256 = random_file(tmp_path, f"paused-{generation}.bin", MULTIPART_SIZE)
    file_id = harness.add_path(path)
    with harness.page.expect_request(gate.holds):
        harness.upload()
    harness.wait_event("part-uploaded", fileID=file_id, PartNumber=1)

    assert harness.pause_resume(file_id) is True
    harness.wait_event("upload-pause", fileID=file_id, isPaused=True)
    screenshot(harness.page, "paused")
    gate.open()
    assert harness.s3_requests("POST", "multipart/") == []  # not completed while paused
    requests_at_pause = len(harness.requests)

    assert harness.pause_resume(file_id) is False
    done = harness.wait_event("complete")
    screenshot(harness.page, "done")
    assert done["successful"] == [file_id], harness.summary()

    created = harness.created()  # one upload, resumed, not a second one
    after = harness.requests[requests_at_pause:]
    # The client asked the server which parts the store holds, then sent only the others.
    listing = [
        r
        for r in after
        if r.method == "GET"
        and r.url.split("?")[0] == f"{harness.service.url}/s3/multipart/{created['uploadId']}"
    ]
    assert len(listing) == 1, [r.url for r in after]
    listed = listing[0].response().json()
    assert 1 in [p["PartNumber"] for p in listed], listed
    assert [part_number(r.url) for r in harness.part_puts()].count(1) == 1
    assert not any(part_number(r.url) == 1 for r in after)
    body = complete_body(harness)
    assert [p["PartNumber"] for p in body["parts"]] == [1, 2, 3, 4]
    # Part 1's ETag comes back from the listing as the store gave it (quoted); the parts sent
    # after the resume carry the client's own form: 6.x then mixes both kinds in one call.
    assert body["parts"][0]["ETag"] == next(p["ETag"] for p in listed if p["PartNumber"] == 1)
    assert body["parts"][0]["ETag"].startswith('"')
    assert_etags_as_sent(generation, body["parts"][1:])

    assert_stored(service, path.name, sha256, MULTIPART_SIZE)
    assert multipart_uploads(service) == []


# -- cancel mid-multipart: DELETE aborts it in the store and in the registry ---------------------


@pytest.mark.parametrize("store", BOTH_STORES)
def test_cancel_multipart(
    harness: Harness, service: Service, generation: str, tmp_path: Path, screenshot: Any
) -> None:
    gate = PartGate(harness.page)
    harness.start(shouldUseMultipart=True)
    path, _ = random_file(tmp_path, f"cancelled-{generation}.bin", MULTIPART_SIZE)
    file_id = harness.add_path(path)
    with harness.page.expect_request(gate.holds):
        harness.upload()
    harness.wait_event("part-uploaded", fileID=file_id, PartNumber=1)
    created = harness.created()
    assert (created["key"], created["uploadId"]) in multipart_uploads(service)

    def is_abort(response: Any) -> bool:
        return response.request.method == "DELETE" and "/s3/multipart/" in response.url

    with harness.page.expect_response(is_abort) as aborted:
        harness.remove(file_id)
    gate.open()
    screenshot(harness.page, "cancelled")
    assert aborted.value.status in (200, 204)
    assert aborted.value.url.startswith(f"{service.url}/s3/multipart/{created['uploadId']}?")
    assert harness.events("upload-success") == []
    assert harness.events("upload-error") == []  # a cancel is not an error

    record = find_record(service, path.name)
    assert record["status"] == "aborted", record
    assert record["key"] == created["key"]
    assert multipart_uploads(service) == []


# -- no credentials: the error Uppy surfaces -----------------------------------------------------


def test_unauthenticated(page: Any, service: Service, generation: str, screenshot: Any) -> None:
    # 5.x with a wrong bearer key; 6.x with no session cookie (nobody signed in).
    harness = Harness.open(page, service, generation, sign_in=False)
    harness.start(api_key="bu_wrong-key")
    file_id = harness.add_bytes(f"refused-{generation}.bin", os.urandom(1000), OCTETS)
    harness.upload()

    error = harness.wait_event("upload-error", fileID=file_id)
    harness.wait_event("complete")
    screenshot(page, "refused")
    (params,) = harness.s3_requests("GET", "params")
    assert params.response().status == 401
    if generation == "v5":
        # A 401 is an authentication error for Companion's client, whatever the body says.
        assert error["error"]["message"] == "Authorization required", error
        assert params.headers.get("authorization") == "Bearer bu_wrong-key"
    else:
        # 6.x shows only the HTTP status text of a failed route call.
        assert error["error"]["message"] == "Companion request failed: Unauthorized", error
        assert "authorization" not in params.headers
    assert page.locator("#files li[data-state=error]").count() == 1
    assert harness.store_posts() == [] and harness.part_puts() == []
    assert list_records(service) == []


# -- a refused file: the server's reason, as each generation shows it ---------------------------


@pytest.mark.parametrize(
    "settings_overrides", [{"allowed_content_types": ("image/*",)}], ids=["images-only"]
)
def test_refused_content_type(
    harness: Harness, service: Service, generation: str, screenshot: Any
) -> None:
    harness.start(shouldUseMultipart=True)
    file_id = harness.add_bytes(f"refused-{generation}.pdf", b"%PDF-1.7\n", "application/pdf")
    harness.upload()

    error = harness.wait_event("upload-error", fileID=file_id)
    harness.wait_event("complete")
    screenshot(harness.page, "refused")
    (create,) = harness.s3_requests("POST", "multipart", exact=True)
    refusal = create.response()
    assert refusal.status == 415
    message = refusal.json()["message"]
    assert message == refusal.json()["error"]["message"]
    if generation == "v5":
        assert error["error"]["message"] == message, error  # a 4xx JSON message is shown
    else:
        assert error["error"]["message"] == ("Companion request failed: Unsupported Media Type"), (
            error
        )
    assert list_records(service) == []
