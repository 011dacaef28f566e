"""An abort while the store is down: the file is aborted at once, the answer says the store's
clean-up is pending (202), and the purge job frees the parts once the store is back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bigupload.expiry.purge import PURGE
from bigupload.jobs.models import Job
from bigupload.jobs.runner import JobRunner
from bigupload.storage.base import Storage, UploadNotFound
from bigupload.storage.local import LocalStorage
from bigupload.storage.s3 import S3Storage, build_client
from bigupload.uppy.landing import LANDING, LANDING_KIND
from tests.conftest import LOCAL_AND_MOTO, Caller, make_bucket
from tests.expiry.helpers import pending_parts
from tests.support.clock import Clock
from tests.support.faults import FaultProxy
from tests.support.moto import s3_client
from tests.support.net import free_port
from tests.uppy import helpers as uppy


@dataclass
class Outage:
    """A real store that the test takes away and brings back."""

    storage: Storage
    proxy: FaultProxy | None = None
    upstream: str = ""
    is_down: bool = False

    def down(self) -> None:
        self.is_down = True
        if isinstance(self.storage, LocalStorage):
            self.storage.root.rename(self.storage.root.with_name("store.away"))
        else:
            assert self.proxy is not None
            self.proxy.stop()  # S3 is then refused at its address

    def up(self) -> None:
        self.is_down = False
        if isinstance(self.storage, LocalStorage):
            self.storage.root.with_name("store.away").rename(self.storage.root)
        else:
            assert self.proxy is not None
            self.proxy = FaultProxy(self.upstream, self.proxy.port).start()


@pytest.fixture(params=LOCAL_AND_MOTO)
def outage(request: pytest.FixtureRequest) -> Iterator[Outage]:
    if request.param == "local":
        yield Outage(request.getfixturevalue("local_store"))
        return
    moto = request.getfixturevalue("moto_server")
    proxy = FaultProxy(moto.endpoint_url, free_port()).start()
    client = build_client(endpoint_url=proxy.url, region="us-east-1")
    found = Outage(
        S3Storage(client, make_bucket(s3_client(moto.endpoint_url))), proxy, moto.endpoint_url
    )
    try:
        yield found
    finally:
        if found.proxy is not None and not found.is_down:
            found.proxy.stop()


@pytest.fixture
def storage(outage: Outage) -> Storage:
    return outage.storage


async def run_jobs(app: FastAPI) -> int:
    """Run every due purge (and landing) job, as ``bigupload worker`` would."""
    runner = JobRunner(
        sessionmaker=app.state.sessionmaker,
        storage=app.state.storage,
        settings=app.state.settings,
        kinds={PURGE.name: PURGE, LANDING: LANDING_KIND},
        worker_id="test-worker",
    )
    return await runner.run_until_idle()


async def purge_job(app: FastAPI, file_id: str) -> Job:
    async with app.state.sessionmaker() as session, session.begin():
        job = (
            await session.execute(select(Job).where(Job.dedupe_key == f"purge:{file_id}"))
        ).scalar_one()
    return job


async def parts_held(storage: Storage, key: str, upload_id: str) -> int | None:
    """How many parts the store holds for the upload; ``None`` once it is gone."""
    try:
        return len(await storage.list_parts(key, upload_id))
    except UploadNotFound:
        return None


def uppy_route(started: dict[str, Any]) -> str:
    return f"/s3/multipart/{quote(started['uploadId'], safe='')}?{uppy.query(started['key'])}"


async def test_the_api_answers_202_aborted_and_the_job_frees_the_parts(
    app: FastAPI, alice: Caller, outage: Outage, store_http: Any, test_clock: Clock
) -> None:
    ticket = await pending_parts(alice, store_http)
    outage.down()

    aborted = await alice.delete(f"/api/v1/uploads/{ticket['id']}")
    assert aborted.status_code == 202, aborted.text
    body = aborted.json()
    assert (body["id"], body["status"], body["cleanup_pending"]) == (ticket["id"], "aborted", True)
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "aborted"
    late = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert (late.status_code, late.json()["error"]["code"]) == (409, "upload_aborted")

    test_clock.advance(60)
    assert await run_jobs(app) == 1  # the store is still down: the job waits to try again
    assert (await purge_job(app, ticket["id"])).status == "queued"

    outage.up()
    assert await parts_held(outage.storage, ticket["key"], ticket["upload_id"]) == 1
    test_clock.advance(3600)
    assert await run_jobs(app) == 1
    job = await purge_job(app, ticket["id"])
    assert (job.status, job.result) == (
        "done",
        {"key": ticket["key"], "upload_aborted": True, "object_deleted": True},
    )
    assert await parts_held(outage.storage, ticket["key"], ticket["upload_id"]) is None

    again = await alice.delete(f"/api/v1/uploads/{ticket['id']}")
    assert again.status_code == 200, again.text
    assert (again.json()["status"], again.json()["cleanup_pending"]) == ("aborted", False)


async def test_an_abort_with_the_store_up_frees_at_once_and_says_so(
    app: FastAPI, alice: Caller, outage: Outage, store_http: Any
) -> None:
    ticket = await pending_parts(alice, store_http)
    aborted = await alice.delete(f"/api/v1/uploads/{ticket['id']}")
    assert aborted.status_code == 200, aborted.text
    assert (aborted.json()["status"], aborted.json()["cleanup_pending"]) == ("aborted", False)
    assert await parts_held(outage.storage, ticket["key"], ticket["upload_id"]) is None


async def test_the_uppy_route_answers_202_and_the_job_frees_the_parts(
    app: FastAPI, alice: Caller, outage: Outage, store_http: Any, test_clock: Clock
) -> None:
    started = await uppy.begin(alice)
    await uppy.put_part(alice, store_http, started, 1)
    record = await uppy.record_of(app, started["key"])
    outage.down()

    aborted = await alice.delete(uppy_route(started))
    assert (aborted.status_code, aborted.json()) == (202, {"cleanupPending": True})
    assert (await uppy.record_of(app, started["key"])).status == "aborted"

    outage.up()
    assert await parts_held(outage.storage, started["key"], started["uploadId"]) == 1
    test_clock.advance(60)
    assert await run_jobs(app) >= 1
    assert (await purge_job(app, str(record.id))).status == "done"
    assert await parts_held(outage.storage, started["key"], started["uploadId"]) is None
    again = await alice.delete(uppy_route(started))
    assert (again.status_code, again.json()) == (200, {})
