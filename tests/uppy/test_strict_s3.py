"""The Uppy routes against LocalStack, which enforces what AWS enforces on signed requests: part
URLs signed without a length, and the form POST's policy (type and length range)."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from fastapi import FastAPI

from bigupload.jobs.runner import JobRunner
from bigupload.storage.base import Storage
from bigupload.storage.s3 import S3Storage
from bigupload.uppy.landing import FIRST_LOOK_SECONDS
from tests.conftest import Caller
from tests.support.clock import Clock
from tests.uppy.helpers import (
    DATA,
    begin,
    complete,
    form_post_location,
    part_of,
    post_form,
    put_part,
    query,
    record_of,
    with_key_marked,
)

pytestmark = pytest.mark.strict_s3

BODY = random.Random(3).randbytes(30_000)


@pytest.fixture
def storage(strict_store: S3Storage) -> Storage:
    return strict_store


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_single_put_size": "20000B"}


async def test_parts_signed_without_a_length_make_the_file(
    app: FastAPI, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    etags = {n: await put_part(alice, store_http, started, n) for n in (1, 2, 3)}
    parts = [
        {"PartNumber": n, "ETag": etag if n == 2 else etag.strip('"')} for n, etag in etags.items()
    ]

    done = await complete(alice, started, parts)

    assert done.status_code == 200, done.text
    record = await record_of(app, started["key"])
    assert (record.status, record.stored_size) == ("uploaded", len(DATA))
    link = await alice.get(f"/api/v1/files/{record.id}/download")
    assert (await store_http.get(link.json()["url"])).content == DATA


async def test_complete_answers_the_objects_url_as_s3_names_it(
    alice: Caller, store_http: httpx.AsyncClient, strict_store: S3Storage
) -> None:
    """The location is what S3's own CompleteMultipartUpload answers, and of the same kind as
    the Location of a single upload's form POST."""
    started = await begin(alice)
    etags = {n: await put_part(alice, store_http, started, n) for n in (1, 2, 3)}
    parts = [{"PartNumber": n, "ETag": etag} for n, etag in etags.items()]
    location = (await complete(alice, started, parts)).json()["location"]

    client, bucket, other = strict_store.client, strict_store.bucket, "direct/object-1"
    upload = client.create_multipart_upload(Bucket=bucket, Key=other)["UploadId"]
    part = client.upload_part(Bucket=bucket, Key=other, UploadId=upload, PartNumber=1, Body=b"x")
    direct = client.complete_multipart_upload(
        Bucket=bucket,
        Key=other,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )["Location"]
    single_key, single_location = await form_post_location(alice, store_http)

    mine = with_key_marked(location, started["key"])
    assert mine == with_key_marked(direct, other)
    assert mine == with_key_marked(single_location, single_key)


async def test_list_parts_answers_every_part_as_the_store_lists_it(
    alice: Caller, store_http: httpx.AsyncClient
) -> None:
    started = await begin(alice)
    etags = {n: await put_part(alice, store_http, started, n) for n in (1, 3)}

    listed = await alice.get(
        f"/s3/multipart/{quote(started['uploadId'], safe='')}?{query(started['key'])}"
    )

    assert listed.status_code == 200, listed.text
    answer = listed.json()
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in answer] == [
        (1, etags[1], len(part_of(1))),
        (3, etags[3], len(part_of(3))),
    ]
    assert all(datetime.fromisoformat(p["LastModified"]).tzinfo for p in answer), answer


async def test_a_form_post_lands_and_is_confirmed_within_its_policy(
    app: FastAPI,
    alice: Caller,
    store_http: httpx.AsyncClient,
    runner: JobRunner,
    test_clock: Clock,
) -> None:
    query = urlencode({"filename": "a.bin", "type": "application/pdf"})
    too_big = (await alice.get(f"/s3/params?{query}")).json()
    refused = await post_form(store_http, too_big, BODY, "application/pdf")  # over 20,000
    assert refused.status_code == 400, refused.text
    assert "EntityTooLarge" in refused.text

    fits = (await alice.get(f"/s3/params?{query}")).json()
    posted = await post_form(store_http, fits, BODY[:20_000], "application/pdf")
    assert posted.status_code == 204, posted.text
    test_clock.advance(FIRST_LOOK_SECONDS)
    await runner.run_until_idle()

    assert (await record_of(app, too_big["key"])).status == "pending"
    record = await record_of(app, fits["key"])
    assert (record.status, record.stored_size) == ("uploaded", 20_000)
