"""The webhook delivery log: each caller lists and replays deliveries of their own files only;
the operator lists and replays everyone's with ``bigupload webhooks``.

Deliveries are real: jobs run through the runner and POST to the receiver of test_webhooks.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from bigupload.cli.webhooks import app as webhooks_cli
from bigupload.jobs.runner import JITTER
from tests.conftest import Caller
from tests.notifications.test_webhooks import (
    LIFECYCLE,
    SECRET_ALL,
    Hooks,
    Receiver,
    about,
    completed_file,
)

DELIVERIES = "/api/v1/webhooks/deliveries"


@pytest.fixture
def settings_overrides(receiver: Receiver) -> dict[str, Any]:
    return {"webhooks": [{"url": receiver.url("/all"), "secret": SECRET_ALL}]}


@dataclass
class Story:
    """Alice's file delivered (its first event after one 500), bob's first event refused (410)."""

    alice_file: str
    bob_file: str


@pytest.fixture
async def story(hooks: Hooks, alice: Caller, bob: Caller) -> Story:
    hooks.receiver.answer(500, when=about("alice", "pending"))
    hooks.receiver.answer(410, when=about("bob", "pending"))
    story = Story(await completed_file(alice), await completed_file(bob))
    await hooks.run()
    hooks.clock.advance(5 * (1 + JITTER) + 1)
    await hooks.run()
    assert len(hooks.receiver.received()) == 9  # alice 1 + 4, bob 4
    return story


async def listed(caller: Caller, **params: Any) -> list[dict[str, Any]]:
    response = await caller.get(DELIVERIES, params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# -- listing ------------------------------------------------------------------------------------


async def test_a_caller_lists_only_deliveries_of_their_own_files(
    story: Story, alice: Caller, bob: Caller
) -> None:
    mine = await listed(alice)
    assert [d["event_type"] for d in mine] == [f"file.{s}" for s in reversed(LIFECYCLE)]
    assert {d["file_id"] for d in mine} == {story.alice_file}
    assert [d["id"] for d in mine] == sorted((d["id"] for d in mine), reverse=True)
    assert [d["status"] for d in mine] == ["delivered"] * 4
    assert [d["attempts"] for d in mine] == [1, 1, 1, 2]  # the first was tried twice
    assert [d["last_status_code"] for d in mine] == [200] * 4
    first = mine[-1]
    assert first["last_error"] is not None and "500" in first["last_error"]
    assert first["webhook_id"].startswith("evt_")
    assert first["endpoint"].endswith("/all")
    assert first["finished_at"] is not None and first["next_attempt_at"] is None

    theirs = await listed(bob)
    assert {d["file_id"] for d in theirs} == {story.bob_file}
    assert [d["status"] for d in theirs] == ["delivered", "delivered", "delivered", "failed"]
    assert (theirs[-1]["attempts"], theirs[-1]["last_status_code"]) == (1, 410)
    assert not {d["id"] for d in mine} & {d["id"] for d in theirs}


async def test_filter_by_status_and_file(story: Story, alice: Caller, bob: Caller) -> None:
    assert await listed(alice, status="failed") == []
    assert [d["event_type"] for d in await listed(bob, status="failed")] == ["file.pending"]
    assert len(await listed(bob, status="delivered")) == 3
    assert await listed(alice, status="pending") == []
    assert len(await listed(alice, file_id=story.alice_file)) == 4
    assert await listed(alice, file_id=story.bob_file) == []  # bob's file, not alice's


async def test_pages_follow_the_cursor(story: Story, alice: Caller) -> None:
    everything = [d["id"] for d in await listed(alice)]
    seen: list[int] = []
    cursor = None
    for _ in range(5):  # bounded: two pages are expected
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await alice.get(DELIVERIES, params=params)).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything
    assert len(seen) == 4


async def test_one_delivery_shows_the_document_it_sends(
    story: Story, hooks: Hooks, alice: Caller, bob: Caller
) -> None:
    newest = (await listed(alice))[0]
    response = await alice.get(f"{DELIVERIES}/{newest['id']}")
    assert response.status_code == 200, response.text
    detail = response.json()
    sent = [r for r in hooks.receiver.received() if r.headers["webhook-id"] == newest["webhook_id"]]
    assert [r.document for r in sent] == [detail["document"]]
    assert detail["last_response"] == "thanks"
    assert detail["last_duration_ms"] >= 0
    assert {k: detail[k] for k in newest} == newest

    missing = await alice.get(f"{DELIVERIES}/999999999")
    others = await alice.get(f"{DELIVERIES}/{(await listed(bob))[0]['id']}")
    assert missing.status_code == others.status_code == 404
    assert missing.json() == others.json()
    assert others.json()["error"]["code"] == "delivery_not_found"


# -- replay -------------------------------------------------------------------------------------


async def test_replay_sends_the_same_message_again(
    story: Story, hooks: Hooks, alice: Caller
) -> None:
    original = (await listed(alice))[-1]  # the pending event, delivered on its second try
    response = await alice.post(f"{DELIVERIES}/{original['id']}/replay")
    assert response.status_code == 202, response.text
    replayed = response.json()
    assert replayed["id"] > original["id"]
    assert (replayed["status"], replayed["attempts"]) == ("pending", 0)
    assert replayed["webhook_id"] == original["webhook_id"]
    assert (replayed["event_type"], replayed["file_id"]) == ("file.pending", story.alice_file)
    assert replayed["next_attempt_at"] is not None

    again = await alice.post(f"{DELIVERIES}/{replayed['id']}/replay")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "delivery_pending"

    before = len(hooks.receiver.received())
    await hooks.run()
    sent = hooks.receiver.received()[before:]
    assert [r.headers["webhook-id"] for r in sent] == [original["webhook_id"]]
    assert sent[0].verify(SECRET_ALL)["type"] == "file.pending"
    done = (await alice.get(f"{DELIVERIES}/{replayed['id']}")).json()
    assert (done["status"], done["attempts"], done["last_status_code"]) == ("delivered", 1, 200)


async def test_a_failed_delivery_can_be_replayed(story: Story, hooks: Hooks, bob: Caller) -> None:
    [failed] = await listed(bob, status="failed")
    response = await bob.post(f"{DELIVERIES}/{failed['id']}/replay")
    assert response.status_code == 202, response.text
    await hooks.run()
    assert (await bob.get(f"{DELIVERIES}/{response.json()['id']}")).json()["status"] == "delivered"
    assert [d["status"] for d in await listed(bob, status="failed")] == ["failed"]  # kept


async def test_nobody_replays_another_owners_delivery(
    story: Story, hooks: Hooks, alice: Caller, bob: Caller
) -> None:
    bobs = (await listed(bob))[0]
    response = await alice.post(f"{DELIVERIES}/{bobs['id']}/replay")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "delivery_not_found"
    assert len(await hooks.jobs()) == 8  # nothing queued


# -- bad requests -------------------------------------------------------------------------------


BAD_QUERIES: list[tuple[str, dict[str, str], str, str | None]] = [
    (DELIVERIES, {"status": "lost"}, "validation_error", "status"),
    (DELIVERIES, {"status": "done"}, "validation_error", "status"),  # a job state, not ours
    (DELIVERIES, {"file_id": "not-a-uuid"}, "validation_error", "file_id"),
    (DELIVERIES, {"limit": "0"}, "validation_error", "limit"),
    (DELIVERIES, {"limit": "201"}, "validation_error", "limit"),
    (DELIVERIES, {"cursor": "bm90IG91cnM"}, "invalid_cursor", None),
    (DELIVERIES, {"cursor": "x" * 201}, "validation_error", "cursor"),
    (f"{DELIVERIES}/abc", {}, "validation_error", "delivery_id"),
    (f"{DELIVERIES}/0", {}, "validation_error", "delivery_id"),
    (f"{DELIVERIES}/{2**63}", {}, "validation_error", "delivery_id"),
]


async def test_bad_queries_are_422_with_a_stable_code(alice: Caller) -> None:
    for path, params, code, field in BAD_QUERIES:  # one app for all: each case is one request
        response = await alice.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        error = response.json()["error"]
        assert error["code"] == code, (path, params)
        if field is not None:
            assert [d["field"] for d in error["details"]] == [field], (path, params)


async def test_replay_of_a_bad_id_is_422(alice: Caller) -> None:
    response = await alice.post(f"{DELIVERIES}/abc/replay")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_the_log_needs_a_key(alice: Caller) -> None:
    for response in (
        await alice.http.get(DELIVERIES),
        await alice.http.get(f"{DELIVERIES}/1"),
        await alice.http.post(f"{DELIVERIES}/1/replay"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"


# -- the operator's command -------------------------------------------------------------------


async def cli(
    app: FastAPI, tmp_path: Path, *args: str
) -> tuple[int, str, str]:  # (exit code, stdout, stderr)
    """``bigupload webhooks <args>`` in-process (in a thread: it runs its own event loop), with
    the app's database and webhooks in its environment."""
    settings = app.state.settings
    env = {
        "BIGUPLOAD_DATA_DIR": str(tmp_path / "cli-data"),
        "BIGUPLOAD_DATABASE_URL": settings.effective_database_url,
        "BIGUPLOAD_WEBHOOKS": json.dumps([w.model_dump() for w in settings.webhooks]),
    }
    result = await asyncio.to_thread(CliRunner().invoke, webhooks_cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_the_operator_lists_everyones_deliveries(
    story: Story, app: FastAPI, tmp_path: Path
) -> None:
    code, out, err = await cli(app, tmp_path, "deliveries")
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 8
    assert {row[3] for row in rows} == {"alice", "bob"}
    assert [int(row[0]) for row in rows] == sorted((int(row[0]) for row in rows), reverse=True)

    code, out, err = await cli(app, tmp_path, "deliveries", "--status", "failed")
    assert code == 0, err
    [row] = [line.split("\t") for line in out.splitlines()]
    assert row[1:6] == ["failed", "file.pending", "bob", "1/10", "410"]

    code, out, err = await cli(app, tmp_path, "deliveries", "--owner", "alice")
    assert code == 0, err
    assert [line.split("\t")[3] for line in out.splitlines()] == ["alice"] * 4

    code, out, err = await cli(app, tmp_path, "deliveries", "--json", "--limit", "2")
    assert code == 0, err
    listed_json = json.loads(out)
    assert len(listed_json) == 2
    assert {"id", "status", "webhook_id", "owner", "last_status_code"} <= set(listed_json[0])

    code, out, err = await cli(app, tmp_path, "deliveries", "--status", "lost")
    assert code == 2
    assert "lost" in err


async def test_the_operator_replays_a_delivery(
    story: Story, hooks: Hooks, app: FastAPI, tmp_path: Path, bob: Caller
) -> None:
    [failed] = await listed(bob, status="failed")
    code, out, err = await cli(app, tmp_path, "replay", str(failed["id"]))
    assert code == 0, err
    new_id = int(out.strip())
    assert new_id > failed["id"]
    replayed = (await bob.get(f"{DELIVERIES}/{new_id}")).json()
    assert (replayed["status"], replayed["webhook_id"]) == ("pending", failed["webhook_id"])

    code, out, err = await cli(app, tmp_path, "replay", str(new_id))
    assert code == 1
    assert "still pending" in err

    await hooks.run()
    assert hooks.receiver.received()[-1].headers["webhook-id"] == failed["webhook_id"]

    code, out, err = await cli(app, tmp_path, "replay", "999999999")
    assert (code, out) == (1, "")
    assert "no webhook delivery 999999999" in err
