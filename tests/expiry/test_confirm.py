"""Confirming files (``POST /files/{id}/confirm``), and files never confirmed expiring.

The expiry of unconfirmed files is the seed's *store on load* off: the application confirms the
files it keeps, and the sweeper removes the others once ``confirm_within_seconds`` has passed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload.expiry import sweeper
from bigupload.expiry.confirm import confirm_file
from bigupload.files.models import FileRecord
from bigupload.files.status import CLIENT_TRANSITIONS, FileStatus, can_transition
from tests.conftest import Caller
from tests.expiry.conftest import CONFIRM_WITHIN, PENDING_EXPIRY, Harness
from tests.expiry.helpers import data, pending_put, whole
from tests.support.clock import Clock

UNCONFIRMED_REASON = "not confirmed within 10 minutes of its upload"


async def confirm(caller: Caller, file_id: str) -> httpx.Response:
    return await caller.post(f"/api/v1/files/{file_id}/confirm")


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the endpoint -------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_confirming_a_whole_file_records_the_first_time_only(
    test_clock: Clock, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    file = await whole(alice, store_http, data(40))
    assert file["confirmed_at"] is None

    first = await confirm(alice, file["id"])
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["id"], body["status"]) == (file["id"], "uploaded")
    assert moment(body["confirmed_at"]) == test_clock.current

    test_clock.advance(seconds=30)
    again = await confirm(alice, file["id"])
    assert again.status_code == 200, again.text
    assert moment(again.json()["confirmed_at"]) == moment(body["confirmed_at"])
    shown = (await alice.get(f"/api/v1/files/{file['id']}")).json()
    assert moment(shown["confirmed_at"]) == moment(body["confirmed_at"])


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_processing_and_completed_files_can_be_confirmed(
    test_clock: Clock, alice: Caller, store_http: httpx.AsyncClient
) -> None:
    for index, target in enumerate(("processing", "completed")):
        file = await whole(alice, store_http, data(41 + index))
        for status in ("processing", "completed")[: index + 1]:
            moved = await alice.put(f"/api/v1/files/{file['id']}/status", json={"status": status})
            assert moved.status_code == 200, moved.text
        response = await confirm(alice, file["id"])
        assert response.status_code == 200, response.text
        assert response.json()["status"] == target
        assert response.json()["confirmed_at"] is not None


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_files_that_are_not_whole_cannot_be_confirmed(
    test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
) -> None:
    pending = await pending_put(alice, store_http, data(43))
    response = await confirm(alice, pending["id"])
    assert response.status_code == 409
    assert error_code(response) == "file_not_uploaded"
    assert response.json()["error"]["details"] == {"status": "pending"}

    failing = await whole(alice, store_http, data(44))
    marked = await alice.put(
        f"/api/v1/files/{failing['id']}/status", json={"status": "failed", "reason": "virus"}
    )
    assert marked.status_code == 200, marked.text
    response = await confirm(alice, failing["id"])
    assert (response.status_code, error_code(response)) == (409, "file_failed")

    aborting = await pending_put(alice, store_http, data(45))
    aborted = await alice.delete(f"/api/v1/uploads/{aborting['id']}")
    assert aborted.status_code in (200, 204), aborted.text
    response = await confirm(alice, aborting["id"])
    assert (response.status_code, error_code(response)) == (409, "file_aborted")

    test_clock.advance(seconds=PENDING_EXPIRY + 1)
    assert (await harness.sweep()).expired_pending == 1  # the pending one
    response = await confirm(alice, pending["id"])
    assert (response.status_code, error_code(response)) == (409, "file_expired")
    assert "not uploaded within 1 hour" in response.json()["error"]["message"]

    for file_id in (pending["id"], failing["id"], aborting["id"]):
        assert (await alice.get(f"/api/v1/files/{file_id}")).json()["confirmed_at"] is None


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_only_the_owner_can_confirm(
    test_clock: Clock, alice: Caller, bob: Caller, store_http: httpx.AsyncClient
) -> None:
    file = await whole(alice, store_http, data(46))
    response = await confirm(bob, file["id"])
    assert (response.status_code, error_code(response)) == (404, "file_not_found")
    missing = await confirm(alice, str(uuid.uuid4()))
    assert (missing.status_code, error_code(missing)) == (404, "file_not_found")
    anonymous = await alice.http.post(f"/api/v1/files/{file['id']}/confirm")
    assert (anonymous.status_code, error_code(anonymous)) == (401, "unauthenticated")
    assert (await alice.get(f"/api/v1/files/{file['id']}")).json()["confirmed_at"] is None


# -- expiry of unconfirmed files ----------------------------------------------------------------


class TestConfirmWithin:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"pending_expiry_seconds": PENDING_EXPIRY, "confirm_within_seconds": CONFIRM_WITHIN}

    async def test_unconfirmed_files_expire_and_confirmed_ones_stay(
        self, test_clock: Clock, alice: Caller, harness: Harness, store_http: httpx.AsyncClient
    ) -> None:
        unconfirmed = await whole(alice, store_http, data(50))
        completed = await whole(alice, store_http, data(51))
        for status in ("processing", "completed"):
            moved = await alice.put(
                f"/api/v1/files/{completed['id']}/status", json={"status": status}
            )
            assert moved.status_code == 200, moved.text
        kept = await whole(alice, store_http, data(52))
        assert (await confirm(alice, kept["id"])).status_code == 200

        test_clock.advance(seconds=CONFIRM_WITHIN - 1)
        young = await whole(alice, store_http, data(53))  # uploaded just now: still has time
        test_clock.advance(seconds=2)

        report = await harness.sweep()
        assert (report.expired_pending, report.expired_unconfirmed) == (0, 2)
        assert report.errors == []
        for file, was in ((unconfirmed, "uploaded"), (completed, "completed")):
            shown = (await alice.get(f"/api/v1/files/{file['id']}")).json()
            assert shown["status"] == "expired"
            assert shown["error"] == UNCONFIRMED_REASON
            events = await harness.events(file["id"])
            assert events[-1] == (was, "expired", UNCONFIRMED_REASON)
            assert [e[1] for e in events].count("expired") == 1
        for file in (kept, young):
            assert (await alice.get(f"/api/v1/files/{file['id']}")).json()["status"] == "uploaded"

        assert await harness.run_purges() == 2
        assert await harness.stored_bytes(unconfirmed["key"]) is None
        assert await harness.stored_bytes(completed["key"]) is None
        assert await harness.stored_bytes(kept["key"]) == data(52)
        assert await harness.stored_bytes(young["key"]) == data(53)

        # An expired file can be neither downloaded nor confirmed any more.
        link = await alice.get(f"/api/v1/files/{unconfirmed['id']}/download")
        assert (link.status_code, error_code(link)) == (409, "file_not_ready")
        late = await confirm(alice, unconfirmed["id"])
        assert (late.status_code, error_code(late)) == (409, "file_expired")

        # The young one expires in its turn, unless confirmed.
        test_clock.advance(seconds=CONFIRM_WITHIN)
        assert (await confirm(alice, young["id"])).status_code == 200
        later = await harness.sweep()
        assert (later.expired_pending, later.expired_unconfirmed) == (0, 0)

    @pytest.mark.postgres
    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    @pytest.mark.parametrize("storage", ["local"], indirect=True)
    async def test_a_confirmation_committed_while_the_sweep_runs_keeps_the_file(
        self,
        test_clock: Clock,
        alice: Caller,
        harness: Harness,
        store_http: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The sweep read the file unconfirmed; the confirmation commits before its update."""
        file = await whole(alice, store_http, data(56))
        test_clock.advance(seconds=CONFIRM_WITHIN + 1)
        expire = sweeper._expire
        raced = []

        async def confirmed_meanwhile(
            session: AsyncSession, records: list[FileRecord], *a: Any
        ) -> list[FileRecord]:
            for record in records:
                assert record.confirmed_at is None  # as the sweep read it
                async with harness.app.state.sessionmaker() as other, other.begin():
                    fresh = await other.get(FileRecord, record.id)
                    assert fresh is not None
                    await confirm_file(other, fresh)
                raced.append(record.id)
            return await expire(session, records, *a)

        monkeypatch.setattr(sweeper, "_expire", confirmed_meanwhile)
        report = await harness.sweep()
        assert [str(r) for r in raced] == [file["id"]]
        assert (report.expired_pending, report.expired_unconfirmed) == (0, 0)
        shown = (await alice.get(f"/api/v1/files/{file['id']}")).json()
        assert (shown["status"], shown["confirmed_at"] is not None) == ("uploaded", True)
        assert [e[1] for e in await harness.events(file["id"])] == ["pending", "uploaded"]
        assert await harness.jobs() == []

    async def test_without_the_setting_unconfirmed_files_are_kept(
        self,
        test_clock: Clock,
        alice: Caller,
        harness: Harness,
        store_http: httpx.AsyncClient,
    ) -> None:
        file = await whole(alice, store_http, data(54))
        test_clock.advance(days=40)
        settings = harness.app.state.settings.model_copy(update={"confirm_within_seconds": None})
        harness.app.state.settings = settings
        report = await harness.sweep()
        assert (report.expired_pending, report.expired_unconfirmed) == (0, 0)
        assert (await alice.get(f"/api/v1/files/{file['id']}")).json()["status"] == "uploaded"
        assert await harness.stored_bytes(file["key"]) == data(54)


# -- the transitions ----------------------------------------------------------------------------


def test_only_the_service_makes_files_expire() -> None:
    for status in (FileStatus.PENDING, FileStatus.UPLOADED, FileStatus.PROCESSING):
        assert can_transition(status, FileStatus.EXPIRED)
    assert can_transition(FileStatus.COMPLETED, FileStatus.EXPIRED)
    for status in (FileStatus.FAILED, FileStatus.EXPIRED, FileStatus.ABORTED):
        assert not can_transition(status, FileStatus.EXPIRED)
    assert all(FileStatus.EXPIRED not in targets for targets in CLIENT_TRANSITIONS.values())


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_a_client_cannot_expire_a_file(alice: Caller, store_http: httpx.AsyncClient) -> None:
    file = await whole(alice, store_http, data(55))
    response = await alice.put(f"/api/v1/files/{file['id']}/status", json={"status": "expired"})
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert (await alice.get(f"/api/v1/files/{file['id']}")).json()["status"] == "uploaded"
