"""Multipart uploads through the API: tickets, part URLs, resume, complete, abort.

Run on the local store (served in-process) and on moto over HTTP. moto enforces nothing about
what a URL was signed for, which is what lets the size-mismatch case put a wrong part in place.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bigupload.storage.base import CompletedPart, Storage, StoredPart, UploadNotFound
from bigupload.storage.local import LocalStorage
from tests.api.helpers import sha256_hex, upload_request
from tests.api.test_complete import events_of
from tests.conftest import LOCAL_AND_MOTO, Caller, store_named

MiB = 1024 * 1024
PART = 5 * MiB
DATA = random.Random(7).randbytes(2 * PART + 12_345)  # three parts, the last short


@pytest.fixture(params=LOCAL_AND_MOTO)
def storage(request: pytest.FixtureRequest) -> Storage:
    return store_named(request)


async def begin(caller: Caller, data: bytes = DATA, **fields: Any) -> dict[str, Any]:
    body = upload_request(data, multipart=True, part_size=PART, **fields)
    response = await caller.post("/api/v1/uploads", json=body)
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


def part_of(data: bytes, number: int, part_size: int = PART) -> bytes:
    return data[(number - 1) * part_size : number * part_size]


async def sign(caller: Caller, file_id: str, numbers: list[int], **extra: Any) -> httpx.Response:
    return await caller.post(
        f"/api/v1/uploads/{file_id}/parts", json={"part_numbers": numbers, **extra}
    )


async def send_parts(
    caller: Caller, http: httpx.AsyncClient, ticket: dict[str, Any], numbers: list[int]
) -> dict[int, str]:
    """Sign and PUT the given parts of :data:`DATA`; answer their ETags."""
    signed = await sign(caller, ticket["id"], numbers)
    assert signed.status_code == 200, signed.text
    etags = {}
    for part in signed.json()["parts"]:
        body = part_of(DATA, part["part_number"])
        assert part["size"] == len(body)
        put = await http.put(part["url"], content=body, headers=part["headers"])
        assert put.status_code == 200, put.text
        etags[part["part_number"]] = put.headers["etag"]
    return etags


async def complete(caller: Caller, file_id: str, **body: Any) -> httpx.Response:
    return await caller.post(f"/api/v1/uploads/{file_id}/complete", json=body or None)


async def download(caller: Caller, http: httpx.AsyncClient, file_id: str) -> bytes:
    link = await caller.get(f"/api/v1/files/{file_id}/download")
    assert link.status_code == 200, link.text
    response = await http.get(link.json()["url"])
    assert response.status_code == 200
    return response.content


# -- tickets ------------------------------------------------------------------------------------


async def test_a_multipart_ticket_names_the_upload_and_its_parts(alice: Caller) -> None:
    ticket = await begin(alice)
    assert ticket["method"] == "multipart"
    assert ticket["status"] == "pending"
    assert ticket["part_size"] == PART
    assert ticket["part_count"] == 3
    assert ticket["part_checksums"] is False
    assert ticket["upload_id"]
    assert "url" not in ticket
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert (record["status"], record["size"]) == ("pending", len(DATA))


class TestThreshold:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"multipart_threshold": "6MiB", "part_size": "5MiB"}

    @pytest.mark.parametrize("storage", ["local"], indirect=True)
    async def test_above_the_threshold_the_server_chooses_parts(self, alice: Caller) -> None:
        above = await alice.post("/api/v1/uploads", json=upload_request(b"", size=6 * MiB + 1))
        at = await alice.post("/api/v1/uploads", json=upload_request(b"", size=6 * MiB))
        assert above.status_code == at.status_code == 201
        assert above.json()["method"] == "multipart"
        assert above.json()["part_size"] == PART
        assert above.json()["part_count"] == 2
        assert at.json()["method"] == "PUT"

    @pytest.mark.parametrize("storage", ["local"], indirect=True)
    async def test_the_client_may_ask_for_one_put_or_for_parts(self, alice: Caller) -> None:
        single = await alice.post(
            "/api/v1/uploads", json=upload_request(b"", size=7 * MiB, multipart=False)
        )
        parts = await alice.post(
            "/api/v1/uploads", json=upload_request(b"", size=10, multipart=True)
        )
        assert single.json()["method"] == "PUT"
        assert (parts.json()["method"], parts.json()["part_count"]) == ("multipart", 1)


@pytest.mark.parametrize("storage", ["local"], indirect=True)
@pytest.mark.parametrize(
    ("size", "preferred", "part_size", "count"),
    [
        (100 * MiB, 1, PART, 20),  # below S3's floor: raised to 5 MiB
        (100 * MiB, 8 * MiB, 8 * MiB, 13),  # honoured
        (20 * 1024**3, 6 * 1024**3, 5 * 1024**3, 4),  # above S3's ceiling: lowered to 5 GiB
        (5 * 1024**4, None, 525 * MiB, 9987),  # 5 TiB: never more than 10,000 parts
    ],
)
async def test_part_size_is_the_preference_within_s3s_limits(
    alice: Caller, size: int, preferred: int | None, part_size: int, count: int
) -> None:
    fields: dict[str, Any] = {"multipart": True}
    if preferred:
        fields["part_size"] = preferred
    response = await alice.post("/api/v1/uploads", json=upload_request(b"", size=size, **fields))
    assert response.status_code == 201, response.text
    assert (response.json()["part_size"], response.json()["part_count"]) == (part_size, count)


# -- the whole way ------------------------------------------------------------------------------


def tag_digest(app: FastAPI, data: bytes) -> bytes:
    """What a part's ETag is the hex of: its MD5 on S3; on the local store (sent no
    Content-MD5), the first 16 bytes of its SHA-256."""
    if isinstance(app.state.storage, LocalStorage):
        return hashlib.sha256(data).digest()[:16]
    return hashlib.md5(data).digest()


async def test_parts_sent_listed_completed_and_downloaded_intact(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    etags = await send_parts(alice, store_http, ticket, [3, 1])  # any order

    listed = await alice.get(f"/api/v1/uploads/{ticket['id']}/parts")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert (body["upload_id"], body["part_size"], body["part_count"]) == (
        ticket["upload_id"],
        PART,
        3,
    )
    assert [(p["part_number"], p["size"], p["etag"]) for p in body["parts"]] == [
        (1, PART, etags[1]),
        (3, 12_345, etags[3]),
    ]
    assert etags[1] == '"' + tag_digest(app, part_of(DATA, 1)).hex() + '"'

    etags |= await send_parts(alice, store_http, ticket, [2])
    claimed = [{"part_number": n, "etag": etags[n].strip('"')} for n in (1, 2, 3)]  # unquoted
    done = await complete(alice, ticket["id"], parts=claimed)
    assert done.status_code == 200, done.text
    record = done.json()
    assert (record["status"], record["stored_size"]) == ("uploaded", len(DATA))
    tags = b"".join(tag_digest(app, part_of(DATA, n)) for n in (1, 2, 3))
    assert record["etag"] == f'"{hashlib.md5(tags).hexdigest()}-3"'
    assert await download(alice, store_http, ticket["id"]) == DATA
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]


async def test_complete_without_naming_parts_uses_what_the_store_holds(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 2, 3])
    done = await complete(alice, ticket["id"])
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "uploaded"
    again = await complete(alice, ticket["id"])
    assert again.status_code == 200
    assert again.json() == done.json()


async def test_a_part_sent_again_replaces_the_earlier_one(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    first = await sign(alice, ticket["id"], [1])
    url = first.json()["parts"][0]
    garbage = bytes(PART)
    assert (await store_http.put(url["url"], content=garbage, headers=url["headers"])).status_code
    await send_parts(alice, store_http, ticket, [1, 2, 3])
    done = await complete(alice, ticket["id"])
    assert done.status_code == 200, done.text
    assert await download(alice, store_http, ticket["id"]) == DATA


async def test_a_declared_checksum_is_verified_at_complete(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice, checksum_sha256=sha256_hex(DATA))
    await send_parts(alice, store_http, ticket, [1, 2, 3])
    done = await complete(alice, ticket["id"])
    assert done.status_code == 200, done.text

    wrong = await begin(alice, checksum_sha256=sha256_hex(b"other"))
    await send_parts(alice, store_http, wrong, [1, 2, 3])
    refused = await complete(alice, wrong["id"])
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "checksum_mismatch"
    record = (await alice.get(f"/api/v1/files/{wrong['id']}")).json()
    assert record["status"] == "failed"


# -- part URLs ----------------------------------------------------------------------------------


async def test_part_urls_have_each_parts_exact_size(alice: Caller) -> None:
    ticket = await begin(alice)
    signed = await sign(alice, ticket["id"], [1, 2, 3])
    assert signed.status_code == 200
    body = signed.json()
    assert body["upload_id"] == ticket["upload_id"]
    assert [(p["part_number"], p["size"], p["method"]) for p in body["parts"]] == [
        (1, PART, "PUT"),
        (2, PART, "PUT"),
        (3, 12_345, "PUT"),
    ]
    assert len({p["url"] for p in body["parts"]}) == 3


@pytest.mark.parametrize(
    ("numbers", "code", "status"),
    [
        ([4], "invalid_part_number", 422),
        ([1, 10_000], "invalid_part_number", 422),
        ([0], "validation_error", 422),
        ([-1], "validation_error", 422),
        ([10_001], "validation_error", 422),
        ([1, 1], "validation_error", 422),
        ([], "validation_error", 422),
        (["1"], "validation_error", 422),
        ([1.5], "validation_error", 422),
        (list(range(1, 1002)), "validation_error", 422),
    ],
)
async def test_bad_part_numbers_are_refused(
    alice: Caller, numbers: list[Any], code: str, status: int
) -> None:
    ticket = await begin(alice)
    response = await sign(alice, ticket["id"], numbers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_an_upload_with_part_checksums_needs_one_per_part(
    alice: Caller, storage: Storage, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice, part_checksums=True)
    assert ticket["part_checksums"] is True
    missing = await sign(alice, ticket["id"], [1, 2])
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "checksum_required"
    assert missing.json()["error"]["details"] == {"missing": [1, 2]}

    digests = {
        str(n): base64.b64encode(hashlib.sha256(part_of(DATA, n)).digest()).decode() for n in (1, 2)
    }
    digests["3"] = hashlib.sha256(part_of(DATA, 3)).hexdigest()  # hex works too
    signed = await sign(alice, ticket["id"], [1, 2, 3], checksums_sha256=digests)
    assert signed.status_code == 200, signed.text
    for part in signed.json()["parts"]:
        body = part_of(DATA, part["part_number"])
        put = await store_http.put(part["url"], content=body, headers=part["headers"])
        assert put.status_code == 200, put.text
    if isinstance(storage, LocalStorage):  # moto keeps no checksum of a presigned part
        listed = (await alice.get(f"/api/v1/uploads/{ticket['id']}/parts")).json()
        assert [p["checksum_sha256"] for p in listed["parts"]] == [
            hashlib.sha256(part_of(DATA, n)).hexdigest() for n in (1, 2, 3)
        ]
    done = await complete(alice, ticket["id"])
    assert done.status_code == 200, done.text
    assert await download(alice, store_http, ticket["id"]) == DATA


@pytest.mark.parametrize(
    "checksums",
    [{"1": "not-a-digest"}, {"one": hashlib.sha256(b"").hexdigest()}, {"1": 5}],
)
async def test_malformed_part_checksums_are_refused(
    alice: Caller, checksums: dict[str, Any]
) -> None:
    ticket = await begin(alice, part_checksums=True)
    response = await sign(alice, ticket["id"], [1], checksums_sha256=checksums)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_a_checksum_for_a_part_not_signed_is_refused(alice: Caller) -> None:
    ticket = await begin(alice)
    digest = hashlib.sha256(b"").hexdigest()
    response = await sign(alice, ticket["id"], [1], checksums_sha256={"2": digest})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_part_number"


async def test_single_put_uploads_have_no_parts(alice: Caller) -> None:
    response = await alice.post("/api/v1/uploads", json=upload_request(b"abc"))
    file_id = response.json()["id"]
    signed = await sign(alice, file_id, [1])
    listed = await alice.get(f"/api/v1/uploads/{file_id}/parts")
    claimed = await complete(alice, file_id, parts=[{"part_number": 1, "etag": "abc"}])
    assert (signed.status_code, signed.json()["error"]["code"]) == (409, "not_multipart")
    assert (listed.status_code, listed.json()["error"]["code"]) == (409, "not_multipart")
    assert (claimed.status_code, claimed.json()["error"]["code"]) == (422, "not_multipart")


async def test_another_owners_upload_is_404_on_every_route(alice: Caller, bob: Caller) -> None:
    ticket = await begin(alice)
    base = f"/api/v1/uploads/{ticket['id']}"
    answers = [
        await sign(bob, ticket["id"], [1]),
        await bob.get(f"{base}/parts"),
        await bob.post(f"{base}/complete"),
        await bob.delete(base),
    ]
    assert [(r.status_code, r.json()["error"]["code"]) for r in answers] == [
        (404, "file_not_found")
    ] * 4
    assert (await alice.get(f"{base}/parts")).status_code == 200


async def test_every_route_needs_a_key(alice: Caller) -> None:
    ticket = await begin(alice)
    base = f"/api/v1/uploads/{ticket['id']}"
    http = alice.http
    answers = [
        await http.post(f"{base}/parts", json={"part_numbers": [1]}),
        await http.get(f"{base}/parts"),
        await http.delete(base),
    ]
    assert [(r.status_code, r.json()["error"]["code"]) for r in answers] == [
        (401, "unauthenticated")
    ] * 3


async def test_an_unknown_upload_is_404(alice: Caller) -> None:
    response = await alice.get(f"/api/v1/uploads/{uuid.uuid4()}/parts")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "file_not_found")


# -- complete checks the store, not the client ----------------------------------------------


async def test_missing_parts_are_409_and_the_upload_goes_on(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 3])
    refused = await complete(alice, ticket["id"])
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "upload_incomplete"
    assert error["details"] == {"missing": [2], "missing_count": 1}
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"

    await send_parts(alice, store_http, ticket, [2])
    assert (await complete(alice, ticket["id"])).status_code == 200


async def test_a_claimed_etag_the_store_does_not_hold_is_422(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    etags = await send_parts(alice, store_http, ticket, [1, 2, 3])
    forged = '"' + "0" * 32 + '"'
    claimed = [{"part_number": n, "etag": forged if n == 2 else etags[n]} for n in (1, 2, 3)]
    refused = await complete(alice, ticket["id"], parts=claimed)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "etag_mismatch"
    assert error["details"] == {
        "parts": [{"part_number": 2, "claimed": forged, "stored": etags[2]}]
    }
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"


async def test_a_claimed_part_beyond_the_upload_is_422(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 2, 3])
    refused = await complete(alice, ticket["id"], parts=[{"part_number": 4, "etag": "abc"}])
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_part_number"


@pytest.mark.parametrize(
    "parts",
    [
        [{"part_number": 1}],
        [{"part_number": "1", "etag": "x"}],
        [{"part_number": 1, "etag": 'a"b'}],
        [{"part_number": 1, "etag": "x"}, {"part_number": 1, "etag": "y"}],
        "all",
    ],
)
async def test_malformed_part_claims_are_refused(alice: Caller, parts: Any) -> None:
    ticket = await begin(alice)
    response = await complete(alice, ticket["id"], parts=parts)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("storage", ["s3-moto"], indirect=True)
async def test_parts_whose_sizes_do_not_add_up_are_refused(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    """moto stores a part of any length; bigupload's complete still refuses it."""
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 3])
    url = (await sign(alice, ticket["id"], [2])).json()["parts"][0]
    short = part_of(DATA, 2)[:-1]
    assert (await store_http.put(url["url"], content=short, headers=url["headers"])).status_code
    refused = await complete(alice, ticket["id"])
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "part_size_mismatch"
    assert error["details"] == {"parts": [{"part_number": 2, "expected": PART, "stored": PART - 1}]}
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"
    await send_parts(alice, store_http, ticket, [2])  # sent again, right this time
    assert (await complete(alice, ticket["id"])).status_code == 200


async def test_racing_completes_make_one_object_and_agree(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 2, 3])
    answers = await asyncio.gather(*(complete(alice, ticket["id"]) for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({a.text for a in answers}) == 1
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]
    assert await download(alice, store_http, ticket["id"]) == DATA


class CompletedElsewhere:
    """A store caught in the middle of a complete that another replica made: it has forgotten
    the multipart upload but does not show the object yet (moto does this; S3 may take a while
    to finish a complete). The object appears ``lag`` seconds after the first ``list_parts``."""

    def __init__(self, store: Storage, lag: float) -> None:
        self._store = store
        self._lag = lag
        self.finishing: asyncio.Task[None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        if self.finishing is None:
            held = await self._store.list_parts(key, upload_id)
            self.finishing = asyncio.create_task(self._finish(key, upload_id, held))
        raise UploadNotFound(upload_id)

    async def _finish(self, key: str, upload_id: str, held: list[StoredPart]) -> None:
        await asyncio.sleep(self._lag)
        parts = [CompletedPart(p.part_number, p.etag) for p in held]
        await self._store.complete_multipart(key, upload_id, parts)


@pytest.mark.parametrize("lag", [0.0, 0.3])
async def test_a_complete_finishing_elsewhere_is_waited_for_and_verified(
    app: FastAPI, alice: Caller, storage: Storage, store_http: httpx.AsyncClient, lag: float
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 2, 3])
    lagging = CompletedElsewhere(storage, lag)
    app.state.storage = lagging
    try:
        answer = await complete(alice, ticket["id"])
    finally:
        app.state.storage = storage
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "uploaded"
    assert lagging.finishing is not None and lagging.finishing.done()
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "uploaded")]
    assert await download(alice, store_http, ticket["id"]) == DATA


async def test_an_upload_aborted_outside_bigupload_is_409_and_stays_pending(
    app: FastAPI, alice: Caller, storage: Storage, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 2, 3])
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    await storage.abort_multipart(record["key"], ticket["upload_id"])
    refused = await complete(alice, ticket["id"])
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "upload_not_in_store"
    assert error["details"] == {"upload_id": ticket["upload_id"]}
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"
    assert await storage.stat(record["key"]) is None


# -- abort --------------------------------------------------------------------------------------


async def test_abort_frees_the_parts_and_ends_the_upload(
    app: FastAPI, alice: Caller, storage: Storage, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 2])
    aborted = await alice.delete(f"/api/v1/uploads/{ticket['id']}")
    assert aborted.status_code == 200, aborted.text
    assert aborted.json()["status"] == "aborted"
    assert ticket["upload_id"] not in {u.upload_id for u in await storage.list_multipart_uploads()}

    base = f"/api/v1/uploads/{ticket['id']}"
    after = [await sign(alice, ticket["id"], [3]), await alice.get(f"{base}/parts")]
    after.append(await complete(alice, ticket["id"]))
    assert [(r.status_code, r.json()["error"]["code"]) for r in after] == [
        (409, "upload_aborted")
    ] * 3
    again = await alice.delete(base)
    assert (again.status_code, again.json()["status"]) == (200, "aborted")
    assert await events_of(app, ticket["id"]) == [(None, "pending"), ("pending", "aborted")]


async def test_a_completed_upload_cannot_be_aborted(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 2, 3])
    assert (await complete(alice, ticket["id"])).status_code == 200
    refused = await alice.delete(f"/api/v1/uploads/{ticket['id']}")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "upload_completed"
    assert await download(alice, store_http, ticket["id"]) == DATA


async def test_abort_racing_complete_leaves_a_consistent_file(
    alice: Caller, storage: Storage, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1, 2, 3])
    done, aborted = await asyncio.gather(
        complete(alice, ticket["id"]), alice.delete(f"/api/v1/uploads/{ticket['id']}")
    )
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    stored = await storage.stat(ticket["key"])
    if record["status"] == "uploaded":
        assert (done.status_code, aborted.status_code) == (200, 409)
        assert stored is not None and stored.size == len(DATA)
    else:
        assert record["status"] == "aborted"
        assert aborted.status_code == 200
        assert (done.status_code, done.json()["error"]["code"]) == (409, "upload_aborted")
        assert stored is None


async def test_a_single_put_upload_can_be_aborted_too(
    alice: Caller, storage: Storage, store_http: httpx.AsyncClient
) -> None:
    response = await alice.post("/api/v1/uploads", json=upload_request(b"abc"))
    ticket = response.json()
    put = await store_http.put(ticket["url"], content=b"abc", headers=ticket["headers"])
    assert put.status_code == 200
    aborted = await alice.delete(f"/api/v1/uploads/{ticket['id']}")
    assert (aborted.status_code, aborted.json()["status"]) == (200, "aborted")
    assert await storage.stat(ticket["key"]) is None


async def test_deleting_a_file_in_progress_frees_its_parts(
    alice: Caller, storage: Storage, store_http: httpx.AsyncClient
) -> None:
    ticket = await begin(alice)
    await send_parts(alice, store_http, ticket, [1])
    deleted = await alice.delete(f"/api/v1/files/{ticket['id']}")
    assert deleted.status_code == 204
    assert ticket["upload_id"] not in {u.upload_id for u in await storage.list_multipart_uploads()}
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).status_code == 404


async def test_a_declared_checksum_is_verified_with_part_checksums_too(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    """The store's checksum of a joined object is one of its parts' checksums, never taken for
    the file's SHA-256 (moto even drops the "-N" that marks it)."""
    ticket = await begin(alice, checksum_sha256=sha256_hex(DATA), part_checksums=True)
    digests = {str(n): hashlib.sha256(part_of(DATA, n)).hexdigest() for n in (1, 2, 3)}
    signed = await sign(alice, ticket["id"], [1, 2, 3], checksums_sha256=digests)
    for part in signed.json()["parts"]:
        body = part_of(DATA, part["part_number"])
        put = await store_http.put(part["url"], content=body, headers=part["headers"])
        assert put.status_code == 200, put.text
    done = await complete(alice, ticket["id"])
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "uploaded"
