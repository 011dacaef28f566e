"""Text that is not valid Unicode (JSON's lone surrogates, ``"\\ud800"``) never gets in, and a
row already holding some still reads."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import text

from bigupload.json_body import ApiRoute
from bigupload.storage_events.parse import InvalidEvent, load_json
from tests.api.helpers import send, start
from tests.conftest import Caller

LONE = "\ud800"
HIGH_LOW_PAIR = "\U0001f600"  # JSON spells it as a surrogate pair: valid


def raw_json(document: Any) -> dict[str, Any]:
    """``document`` as JSON bytes with every non-ASCII character escaped, as a client may send
    it (a lone surrogate cannot be encoded otherwise)."""
    return {
        "content": json.dumps(document).encode(),
        "headers": {"Content-Type": "application/json"},
    }


def upload(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"filename": "a.mp4", "content_type": "video/mp4", "size": 3}
    body.update(fields)
    return body


def assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (upload(filename=LONE), "filename"),
        (upload(filename=f"a{LONE}b.mp4"), "filename"),
        (upload(fileName="\udfff.mp4"), "fileName"),
        (upload(content_type=f"video/mp4; a={LONE}"), "content_type"),
        (upload(metadata={"album": LONE}), "metadata.album"),
        (upload(metadata={f"k{LONE}": "v"}), "metadata.k\ufffd"),
        (upload(checksum_sha256=LONE), "checksum_sha256"),
        (upload(unknown={"deep": [1, {"x": LONE}]}), "unknown.deep.1.x"),
    ],
)
async def test_create_upload_refuses_lone_surrogates(
    alice: Caller, body: dict[str, Any], field: str
) -> None:
    assert_refused(await alice.post("/api/v1/uploads", **raw_json(body)), field)
    listing = await alice.get("/api/v1/files")
    assert listing.status_code == 200
    assert listing.json()["items"] == []


async def test_a_surrogate_pair_is_valid_text(alice: Caller) -> None:
    body = upload(filename=f"{HIGH_LOW_PAIR}.mp4", metadata={"mood": HIGH_LOW_PAIR})
    response = await alice.post("/api/v1/uploads", **raw_json(body))
    assert response.status_code == 201, response.text
    got = await alice.get(f"/api/v1/files/{response.json()['id']}")
    assert got.json()["filename"] == f"{HIGH_LOW_PAIR}.mp4"
    assert got.json()["metadata"] == {"mood": HIGH_LOW_PAIR}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filename": LONE, "type": "video/mp4"}, "filename"),
        ({"filename": "a.mp4", "type": LONE}, "type"),
        ({"filename": "a.mp4", "metadata": {"name": f"{LONE}.mp4"}}, "metadata.name"),
        ({"filename": "a.mp4", "metadata": {"tags": {"x": [LONE]}}}, "metadata.tags.x.0"),
    ],
)
async def test_uppy_routes_refuse_lone_surrogates(
    alice: Caller, body: dict[str, Any], field: str
) -> None:
    response = await alice.post("/s3/multipart", **raw_json(body))
    assert_refused(response, field)
    assert response.json()["message"].startswith("invalid request")


async def test_every_text_field_of_every_route_is_checked(app: FastAPI, alice: Caller) -> None:
    """Sign-in, status changes and part lists are refused as uploads are: the check is on
    every JSON body, before any schema."""
    file_id = (await start(alice, b"abc"))["id"]
    cases = [
        ("/api/v1/session", {"api_key": LONE}, "api_key"),
        (
            f"/api/v1/uploads/{file_id}/complete",
            {"parts": [{"part_number": 1, "etag": LONE}]},
            "parts.0.etag",
        ),
        (
            f"/api/v1/uploads/{file_id}/parts",
            {"part_numbers": [1], "checksums_sha256": {"1": LONE}},
            "checksums_sha256.1",
        ),
    ]
    for url, body, field in cases:
        assert_refused(await alice.post(url, **raw_json(body)), field)
    status = await alice.http.put(
        f"/api/v1/files/{file_id}/status",
        headers={**alice.auth, "Content-Type": "application/json"},
        content=json.dumps({"status": "failed", "reason": LONE}).encode(),
    )
    assert_refused(status, "reason")
    routes = [c.original_route for c in iter_route_contexts(app.routes)]
    routes = [r for r in routes if isinstance(r, APIRoute)]
    assert routes and all(isinstance(r, ApiRoute) for r in routes)


def test_storage_events_refuse_lone_surrogates() -> None:
    event = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": LONE}}}]}
    with pytest.raises(InvalidEvent, match=r"Records\.0\.s3\.object\.key is not valid Unicode"):
        load_json(json.dumps(event).encode())


async def test_query_strings_cannot_carry_surrogates(alice: Caller) -> None:
    # Percent-encoded surrogates (CESU-8) decode to U+FFFD, never to a surrogate.
    response = await alice.get("/api/v1/files?cursor=%ED%A0%80")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_cursor"


# -- rows stored before the check ------------------------------------------------------------


async def store_raw_metadata(app: FastAPI, file_id: str, raw: str) -> None:
    """Write a file's metadata column as this JSON text, as an older version may have."""
    engine = app.state.engine
    value = "CAST(:raw AS json)" if engine.dialect.name == "postgresql" else ":raw"
    async with engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE files SET metadata = {value} WHERE id = :id"),
            {
                "raw": raw,
                "id": uuid.UUID(file_id).hex
                if engine.dialect.name == "sqlite"
                else uuid.UUID(file_id),
            },
        )


BAD_ROW = '{"album": "\\ud800x", "\\udc00key": ["\\udfff", {"n": 1}], "ok": "\\ud83d\\ude00"}'
READ_BACK = {"album": "\ufffdx", "\ufffdkey": ["\ufffd", {"n": 1}], "ok": HIGH_LOW_PAIR}


async def test_a_stored_row_with_surrogates_still_reads(app: FastAPI, alice: Caller) -> None:
    ticket = await start(alice, b"abc")
    await store_raw_metadata(app, ticket["id"], BAD_ROW)

    one = await alice.get(f"/api/v1/files/{ticket['id']}")
    assert one.status_code == 200, one.text
    assert one.json()["metadata"] == READ_BACK
    listing = await alice.get("/api/v1/files")
    assert listing.status_code == 200, listing.text
    assert listing.json()["items"][0]["metadata"] == READ_BACK

    put = await send(alice.http, ticket, b"abc")
    assert put.status_code == 200
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "uploaded"
    assert done.json()["metadata"] == READ_BACK
