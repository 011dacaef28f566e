"""The app itself refuses oversized request targets and headers, whatever server runs it (the
server side of ``bigupload serve`` is in tests/cli/test_serve_request_head.py)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import httpx

from bigupload.request_head import MAX_HEADER_BYTES, MAX_HEADER_COUNT, MAX_TARGET_BYTES
from bigupload.uploads.schemas import MAX_METADATA_BYTES
from tests.conftest import Caller


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["connection"] == "close"


def query_of(target_length: int, path: str) -> str:
    return "q=" + "a" * (target_length - len(path) - 3)


async def test_a_target_over_the_limit_is_414(alice: Caller) -> None:
    path = "/api/v1/files"
    at_limit = await alice.get(f"{path}?{query_of(MAX_TARGET_BYTES, path)}")
    assert at_limit.status_code == 200, at_limit.text
    over = await alice.get(f"{path}?{query_of(MAX_TARGET_BYTES + 1, path)}")
    assert_refused(over, 414, "uri_too_long")
    long_path = await alice.get("/api/v1/files/" + "x" * MAX_TARGET_BYTES)
    assert_refused(long_path, 414, "uri_too_long")


async def test_uppy_routes_get_the_message_uppy_shows(alice: Caller) -> None:
    response = await alice.get(f"/s3/params?{query_of(MAX_TARGET_BYTES + 1, '/s3/params')}")
    assert_refused(response, 414, "uri_too_long")
    assert response.json()["message"] == response.json()["error"]["message"]


async def test_too_many_headers_are_431(alice: Caller) -> None:
    # httpx adds host, accept, accept-encoding, connection, user-agent and authorization.
    own = 6
    headers = {f"x-h{i}": "v" for i in range(MAX_HEADER_COUNT - own)}
    assert (await alice.get("/api/v1/files", headers=headers)).status_code == 200
    headers["x-one-more"] = "v"
    assert_refused(await alice.get("/api/v1/files", headers=headers), 431, "headers_too_large")


async def test_headers_over_the_size_limit_are_431(alice: Caller) -> None:
    response = await alice.get("/api/v1/files", headers={"x-big": "b" * MAX_HEADER_BYTES})
    assert_refused(response, 431, "headers_too_large")
    fits = await alice.get("/api/v1/files", headers={"x-big": "b" * (MAX_HEADER_BYTES // 2)})
    assert fits.status_code == 200


async def test_the_largest_uppy_params_query_fits(alice: Caller) -> None:
    """``GET /s3/params`` carries metadata in its query: metadata at its 8 KiB limit, in
    characters that percent-encode at their longest, is still under the target limit."""
    metadata = {f"metadata[k{i}]": "\u65e5" * 169 for i in range(8)}
    assert len(json.dumps({k[9:-1]: v for k, v in metadata.items()})) <= MAX_METADATA_BYTES
    query = urlencode({"filename": "\u65e5" * 60 + ".mp4", "type": "video/mp4", **metadata})
    assert len(query) > MAX_TARGET_BYTES * 3 // 4
    response = await alice.get(f"/s3/params?{query}")
    assert response.status_code == 200, response.text
