"""The multipart routes Uppy calls: begin, sign (one part, a batch), list, complete, abort.

On the local store (served in-process) and on moto over HTTP, on SQLite and PostgreSQL. Part
URLs here are signed without a length (Uppy sends no sizes), and the file's size is unknown
until its parts are completed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from bigupload.storage.base import Storage, UploadNotFound
from bigupload.storage.s3 import S3Storage
from tests.conftest import Caller
from tests.uppy.helpers import (
    DATA,
    PART,
    MiB,
    begin,
    complete,
    form_post_location,
    part_of,
    put_part,
    query,
    record_of,
    sign_part,
    with_key_marked,
)

LOCAL_ONLY = pytest.mark.parametrize("storage", ["local"], indirect=True)


class _Timestamp:
    """Equal to any ISO 8601 time with a zone, as ``LastModified`` is sent."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and datetime.fromisoformat(other).tzinfo is not None

    def __repr__(self) -> str:
        return "<an ISO 8601 time with a zone>"


ANY_TIME = _Timestamp()


def route(started: dict[str, Any], tail: str = "") -> str:
    return f"/s3/multipart/{quote(started['uploadId'], safe='')}{tail}?{query(started['key'])}"


async def send_all(
    caller: Caller, http: httpx.AsyncClient, started: dict[str, Any]
) -> dict[int, str]:
    return {n: await put_part(caller, http, started, n) for n in (1, 2, 3)}


def claims(etags: dict[int, str], quoted: set[int] | None = None) -> list[dict[str, Any]]:
    """The parts as Uppy names them: quoted ETags for the numbers in ``quoted`` (all when
    ``None``, as Uppy 5 sends them), bare ones for the others (as Uppy 6 sends them)."""
    return [
        {
            "PartNumber": n,
            "ETag": etag if quoted is None or n in quoted else etag.strip('"'),
        }
        for n, etag in sorted(etags.items())
    ]


# -- the whole upload -----------------------------------------------------------------------------


async def test_begin_records_a_file_of_unknown_size(app: FastAPI, alice: Caller) -> None:
    started = await begin(
        alice,
        filename="3f2a-holiday.mp4",
        metadata={"name": "holiday.mp4", "type": "video/mp4", "relativePath": None, "n": 3},
    )
    assert set(started) == {"key", "uploadId", "bucket"}
    assert started["key"].startswith("uploads/alice/")
    record = await record_of(app, started["key"])
    assert record.owner == "alice"
    assert record.filename == "holiday.mp4"  # Uppy's name, not the filename sent
    assert record.content_type == "video/mp4"
    assert (record.size, record.part_size, record.stored_size) == (None, None, None)
    assert record.status == "pending"
    assert record.multipart_upload_id == started["uploadId"]
    assert record.bucket == started["bucket"]
    assert record.user_metadata == {"name": "holiday.mp4", "type": "video/mp4", "n": "3"}


@pytest.mark.parametrize("quoted", [None, set(), {1, 3}], ids=["quoted", "unquoted", "mixed"])
async def test_parts_sent_and_completed_make_the_file(
    app: FastAPI,
    alice: Caller,
    store_http: httpx.AsyncClient,
    storage: Storage,
    quoted: set[int] | None,
) -> None:
    started = await begin(alice)
    etags = await send_all(alice, store_http, started)

    done = await complete(alice, started, claims(etags, quoted))

    assert done.status_code == 200, done.text
    record = await record_of(app, started["key"])
    assert done.json() == {
        "location": object_url_in(storage, started["key"]),
        "key": started["key"],
        "bucket": started["bucket"],
    }
    assert (record.status, record.size, record.stored_size) == ("uploaded", None, len(DATA))
    file = await alice.get(f"/api/v1/files/{record.id}")
    assert (file.json()["status"], file.json()["stored_size"]) == ("uploaded", len(DATA))
    link = await alice.get(f"/api/v1/files/{record.id}/download")
    assert (await store_http.get(link.json()["url"])).content == DATA


def object_url_in(storage: Storage, key: str) -> str:
    """The object's URL as each store names it (S3 path-style on moto)."""
    if isinstance(storage, S3Storage):
        return f"{storage.client.meta.endpoint_url}/{storage.bucket}/{quote(key, safe='/')}"
    return f"http://testserver/store/{quote(key, safe='/')}"


@LOCAL_ONLY  # moto's form POST answers no Location; LocalStack's: tests/uppy/test_strict_s3.py
async def test_complete_answers_the_same_kind_of_url_as_a_single_upload(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    """A multipart upload's location is the object's URL in the store, as a form POST's is
    (Companion answers S3's for both), not an API URL that needs a key."""
    started = await begin(alice)
    done = await complete(alice, started, claims(await send_all(alice, store_http, started)))
    single_key, single_location = await form_post_location(alice, store_http)

    location = done.json()["location"]
    assert with_key_marked(location, started["key"]) == with_key_marked(single_location, single_key)
    assert "/api/" not in location


async def test_complete_is_idempotent(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    parts = claims(await send_all(alice, store_http, started))
    first = await complete(alice, started, parts)
    again = await complete(alice, started, parts)
    assert first.status_code == again.status_code == 200, again.text
    assert first.json() == again.json()


async def test_racing_completes_agree(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    parts = claims(await send_all(alice, store_http, started))
    answers = await asyncio.gather(*(complete(alice, started, parts) for _ in range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert (await record_of(app, started["key"])).stored_size == len(DATA)


def listed_part(number: int, etag: str, size: int) -> dict[str, Any]:
    return {"PartNumber": number, "ETag": etag, "Size": size, "LastModified": ANY_TIME}


async def test_list_parts_tells_what_to_resume(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    assert (await alice.get(route(started))).json() == []
    one = await put_part(alice, store_http, started, 1)
    three = await put_part(alice, store_http, started, 3)

    listed = await alice.get(route(started))

    assert listed.status_code == 200, listed.text
    # Every part the store holds, the short last one too, as Companion lists them.
    assert listed.json() == [
        listed_part(1, one, len(part_of(1))),
        listed_part(3, three, len(part_of(3))),
    ]
    two = await put_part(alice, store_http, started, 2)  # resumed: the missing part
    named = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed.json()]
    done = await complete(alice, started, [*named, {"PartNumber": 2, "ETag": two}])
    assert done.status_code == 200, done.text


async def test_list_parts_shows_a_short_part_with_its_size(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    """A part shorter than the others is listed as the store lists it: a client that completes
    from the list gets an answer about that part, never an object without it."""
    started = await begin(alice)
    one = await put_part(alice, store_http, started, 1)
    signed = (await sign_part(alice, started, 2)).json()
    short = await store_http.put(signed["url"], content=b"x" * 1000, headers=signed.get("headers"))
    assert short.status_code == 200, short.text
    three = await put_part(alice, store_http, started, 3)

    listed = await alice.get(route(started))

    assert listed.json() == [
        listed_part(1, one, len(part_of(1))),
        listed_part(2, short.headers["etag"], 1000),
        listed_part(3, three, len(part_of(3))),
    ]
    named = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed.json()]
    refused = await complete(alice, started, named)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "part_size_mismatch")
    assert refused.json()["error"]["details"]["parts"] == [
        {"part_number": 2, "expected": PART, "stored": 1000}
    ]


async def test_a_batch_of_part_urls(alice: Caller, store_http: httpx.AsyncClient) -> None:
    started = await begin(alice)
    batch = await alice.get(route(started, "/batch") + "&partNumbers=3,1,2,1")
    assert batch.status_code == 200, batch.text
    urls = batch.json()["presignedUrls"]
    assert list(urls) == ["3", "1", "2"]
    etags = {}
    for number, url in urls.items():
        put = await store_http.put(url, content=part_of(int(number)))
        assert put.status_code == 200, put.text
        etags[int(number)] = put.headers["etag"]
    assert (await complete(alice, started, claims(etags))).status_code == 200


async def test_one_part_url_says_when_it_expires(alice: Caller) -> None:
    started = await begin(alice)
    signed = await sign_part(alice, started, 1)
    assert signed.status_code == 200, signed.text
    assert set(signed.json()) == {"url", "expires"}  # no headers to send
    assert signed.json()["expires"] == 900


async def test_abort_frees_the_parts_and_is_idempotent(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient, storage: Storage
) -> None:
    started = await begin(alice)
    await put_part(alice, store_http, started, 1)

    first = await alice.delete(route(started))
    again = await alice.delete(route(started))

    assert (first.status_code, first.json()) == (200, {})
    assert (again.status_code, again.json()) == (200, {})
    assert (await record_of(app, started["key"])).status == "aborted"
    with pytest.raises(UploadNotFound):
        await storage.list_parts(started["key"], started["uploadId"])
    late = await sign_part(alice, started, 2)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "upload_aborted")
    ended = await complete(alice, started, [{"PartNumber": 1, "ETag": "abc"}])
    assert (ended.status_code, ended.json()["error"]["code"]) == (409, "upload_aborted")


async def test_a_completed_upload_cannot_be_aborted_nor_signed_for(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    assert (
        await complete(alice, started, claims(await send_all(alice, store_http, started)))
    ).status_code == 200
    aborted = await alice.delete(route(started))
    signed = await sign_part(alice, started, 1)
    listed = await alice.get(route(started))
    for answer in (aborted, signed, listed):
        assert (answer.status_code, answer.json()["error"]["code"]) == (409, "upload_completed")


# -- who may -------------------------------------------------------------------------------------


async def test_every_route_needs_a_credential(alice: Caller) -> None:
    started = await begin(alice)
    http = alice.http
    answers = [
        await http.get("/s3/params?filename=a.mp4&type=video/mp4"),
        await http.post("/s3/multipart", json={"filename": "a.mp4", "type": "video/mp4"}),
        await http.get(route(started)),
        await http.get(route(started, "/batch") + "&partNumbers=1"),
        await http.get(route(started, "/1")),
        await http.post(route(started, "/complete"), json={"parts": []}),
        await http.delete(route(started)),
    ]
    for answer in answers:
        assert answer.status_code == 401, answer.text
        body = answer.json()
        assert body["error"]["code"] == "unauthenticated"
        assert body["message"] == body["error"]["message"]


async def test_another_owners_upload_is_not_found_on_every_route(
    alice: Caller, bob: Caller
) -> None:
    started = await begin(alice)
    answers = [
        await bob.get(route(started)),
        await bob.get(route(started, "/batch") + "&partNumbers=1"),
        await bob.get(route(started, "/1")),
        await bob.post(
            route(started, "/complete"), json={"parts": [{"PartNumber": 1, "ETag": "e"}]}
        ),
        await bob.delete(route(started)),
    ]
    for answer in answers:
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "upload_not_found"
        assert answer.json()["message"] == "no such upload"


async def test_a_key_that_is_not_the_uploads_is_not_found(alice: Caller) -> None:
    started = await begin(alice)
    other = await begin(alice)
    for wrong in (
        {**started, "key": other["key"]},  # another upload of the caller's
        {**started, "key": started["key"] + "x"},  # no upload at all
        {**started, "uploadId": other["uploadId"]},
    ):
        for answer in (
            await alice.get(route(wrong)),
            await sign_part(alice, wrong, 1),
            await alice.delete(route(wrong)),
        ):
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "upload_not_found"
    missing = await alice.get(f"/s3/multipart/{quote(started['uploadId'], safe='')}")
    assert (missing.status_code, missing.json()["error"]["code"]) == (422, "validation_error")


# -- what is refused -------------------------------------------------------------------------------


@LOCAL_ONLY
@pytest.mark.parametrize("number", ["0", "10001", "abc", "1.5", "-1", "٣", "99999999999"])
async def test_part_numbers_out_of_range_are_400(alice: Caller, number: str) -> None:
    started = await begin(alice)
    answer = await sign_part(alice, started, quote(number))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_part_number"
    assert answer.json()["message"] == answer.json()["error"]["message"]


@LOCAL_ONLY
@pytest.mark.parametrize(
    ("numbers", "code"),
    [
        ("", "invalid_part_number"),
        ("1,,2", "invalid_part_number"),
        ("1,x", "invalid_part_number"),
        ("0", "invalid_part_number"),
        ("10001", "invalid_part_number"),
        (",".join(str(n) for n in range(1, 1002)), "too_many_parts"),
    ],
)
async def test_junk_batches_are_400(alice: Caller, numbers: str, code: str) -> None:
    started = await begin(alice)
    answer = await alice.get(route(started, "/batch") + f"&partNumbers={numbers}")
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, code), answer.text


@LOCAL_ONLY
async def test_a_batch_of_the_most_parts_is_signed(alice: Caller) -> None:
    started = await begin(alice)
    numbers = ",".join(str(n) for n in range(1, 1001))
    answer = await alice.get(route(started, "/batch") + f"&partNumbers={numbers}")
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["presignedUrls"]) == 1000


class TestAllowList:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"allowed_content_types": "video/*"}

    @LOCAL_ONLY
    async def test_a_type_outside_the_allow_list_is_415(self, alice: Caller) -> None:
        multipart = await alice.post(
            "/s3/multipart", json={"filename": "a.exe", "type": "application/x-msdownload"}
        )
        params = await alice.get("/s3/params?filename=a.exe&type=application/x-msdownload")
        for answer in (multipart, params):
            assert answer.status_code == 415, answer.text
            assert answer.json()["error"]["code"] == "content_type_not_allowed"
            assert "message" in answer.json()
        assert (await alice.get("/api/v1/files")).json()["items"] == []


@LOCAL_ONLY
@pytest.mark.parametrize(
    "body",
    [
        {"filename": "a.mp4", "type": "video/mp4", "metadata": "x"},
        {"filename": "a.mp4", "type": "video/mp4", "metadata": {str(n): "v" for n in range(33)}},
        {"filename": "a.mp4", "type": "video/mp4", "metadata": {"k" * 129: "v"}},
        {"filename": "a.mp4", "type": "video/mp4", "metadata": {"k": "v" * 9000}},
        {"filename": "a.mp4", "type": "video/mp4", "metadata": {"name": "../etc/passwd"}},
        {"filename": "a/b.mp4", "type": "video/mp4"},
        {"type": "video/mp4"},
        {"filename": "a.mp4", "type": "not a type"},
        {"filename": 7, "type": "video/mp4"},
    ],
)
async def test_junk_in_a_new_upload_is_422(alice: Caller, body: dict[str, Any]) -> None:
    answer = await alice.post("/s3/multipart", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_error"
    assert answer.json()["message"].startswith("invalid request: ")


@LOCAL_ONLY
async def test_a_body_over_the_api_limit_is_413(alice: Caller) -> None:
    answer = await alice.post(
        "/s3/multipart",
        content=b'{"filename": "a.mp4", "metadata": {"k": "' + b"v" * 2 * MiB + b'"}}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert answer.json()["message"] == answer.json()["error"]["message"]


async def test_completing_with_missing_parts_is_409_and_the_upload_goes_on(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    one = await put_part(alice, store_http, started, 1)
    three = await put_part(alice, store_http, started, 3)
    parts = claims({1: one, 2: '"' + "0" * 32 + '"', 3: three})

    early = await complete(alice, started, parts)

    assert (early.status_code, early.json()["error"]["code"]) == (409, "upload_incomplete")
    assert early.json()["error"]["details"]["missing"] == [2]
    assert (await record_of(app, started["key"])).status == "pending"


@LOCAL_ONLY
async def test_parts_named_with_gaps_are_422(alice: Caller, store_http: httpx.AsyncClient) -> None:
    started = await begin(alice)
    etags = await send_all(alice, store_http, started)
    answer = await complete(alice, started, claims({1: etags[1], 3: etags[3]}))
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_part_number")


@LOCAL_ONLY
async def test_an_etag_the_store_does_not_hold_is_422(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    etags = await send_all(alice, store_http, started)
    etags[2] = '"' + "0" * 32 + '"'
    answer = await complete(alice, started, claims(etags))
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "etag_mismatch")


@LOCAL_ONLY
async def test_parts_of_uneven_sizes_are_422(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    signed = await sign_part(alice, started, 1)
    put = await store_http.put(signed.json()["url"], content=part_of(1) + b"extra")
    assert put.status_code == 200, put.text
    etags = {1: put.headers["etag"]} | {
        n: await put_part(alice, store_http, started, n) for n in (2, 3)
    }
    answer = await complete(alice, started, claims(etags))
    assert (answer.status_code, answer.json()["error"]["code"]) == (422, "part_size_mismatch")
    assert (await record_of(app, started["key"])).status == "pending"


@LOCAL_ONLY
async def test_malformed_part_claims_are_422(alice: Caller) -> None:
    started = await begin(alice)
    for parts in (
        [],
        [{"PartNumber": 1}],
        [{"PartNumber": 0, "ETag": "e"}],
        [{"PartNumber": 1, "ETag": "e"}, {"PartNumber": 1, "ETag": "e"}],
        [{"PartNumber": 1, "ETag": 'a"b'}],
    ):
        answer = await complete(alice, started, parts)
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "validation_error")


class TestSizeLimit:
    """A file of at most 12 MiB: parts 1 to 3 (two of 5 MiB, then the rest) and no more."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"max_file_size": "12MiB"}

    @LOCAL_ONLY
    async def test_a_part_beyond_the_largest_file_is_413(self, alice: Caller) -> None:
        started = await begin(alice)
        assert (await sign_part(alice, started, 3)).status_code == 200
        beyond = await sign_part(alice, started, 4)
        assert (beyond.status_code, beyond.json()["error"]["code"]) == (413, "file_too_large")
        batch = await alice.get(route(started, "/batch") + "&partNumbers=1,4")
        assert (batch.status_code, batch.json()["error"]["code"]) == (413, "file_too_large")

    async def test_parts_over_the_limit_fail_the_upload_and_are_freed(
        self,
        app: FastAPI,
        alice: Caller,
        store_http: httpx.AsyncClient,
        storage: Storage,
    ) -> None:
        started = await begin(alice)
        etags = await send_all(alice, store_http, started)  # 10 MiB and 4321 bytes
        signed = await sign_part(alice, started, 3)
        put = await store_http.put(signed.json()["url"], content=b"x" * (3 * MiB))
        assert put.status_code == 200, put.text
        etags[3] = put.headers["etag"]  # now 13 MiB in all

        refused = await complete(alice, started, claims(etags))

        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["code"] == "file_too_large"
        assert refused.json()["error"]["details"] == {
            "max_size": 12 * MiB,
            "size": 13 * MiB,
        }
        record = await record_of(app, started["key"])
        assert record.status == "failed"
        assert record.error == refused.json()["error"]["message"]
        with pytest.raises(UploadNotFound):
            await storage.list_parts(started["key"], started["uploadId"])
        assert await storage.stat(started["key"]) is None
        again = await complete(alice, started, claims(etags))
        assert (again.status_code, again.json()["error"]["code"]) == (409, "upload_failed")


# -- with the /api/v1 routes ---------------------------------------------------------------------


@LOCAL_ONLY
async def test_the_api_completes_an_uppy_upload_from_what_the_store_holds(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    await send_all(alice, store_http, started)
    record = await record_of(app, started["key"])

    parts = await alice.get(f"/api/v1/uploads/{record.id}/parts")
    done = await alice.post(f"/api/v1/uploads/{record.id}/complete")

    assert (parts.status_code, parts.json()["error"]["code"]) == (409, "size_not_declared")
    assert "message" not in parts.json()  # the top-level message is for /s3 only
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["stored_size"]) == ("uploaded", len(DATA))
