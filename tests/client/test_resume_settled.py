"""A resumed upload first learns from the server what became of it.

Ctrl-C during the final complete can leave the store's multipart upload completed (so gone)
while the registry still says ``pending`` and the client's resume state remains. The next run
must confirm that file, not report the store's missing upload nor begin a new one.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from bigupload.client import RetryPolicy, ServerError
from bigupload.storage.base import CompletedPart
from bigupload.storage.factory import build_storage
from tests.support.faults import FaultPlan
from tests.support.harness import PART, Harness, MakeFile, sha256_of

PARTS = 3
SIZE = PARTS * PART - 1000
COMPLETE = "POST /api/v1/uploads/{id}/complete"


def stopped_at_complete(harness: Harness, path: Path) -> dict[str, Any]:
    """Upload every part, then fail at complete (the client stops there); the saved state."""
    harness.proxy.plan = FaultPlan(explicit={COMPLETE: ["503"]}, retry_after="0")
    with (
        harness.client(concurrency=2, retries=RetryPolicy(retries=0)) as client,
        pytest.raises(ServerError),
    ):
        client.upload(path)
    harness.proxy.plan = FaultPlan()
    [state_file] = harness.states()
    state: dict[str, Any] = json.loads(state_file.read_text())
    assert len(state["parts"]) == PARTS
    return state


def _b64(part: dict[str, Any]) -> str | None:
    hex_digest = part.get("checksum_sha256")
    return base64.b64encode(bytes.fromhex(hex_digest)).decode() if hex_digest else None


def complete_in_the_store_only(harness: Harness, file_id: str) -> None:
    """What the interrupted complete did before the registry heard of it."""
    with harness.api() as api:
        record = api.get(f"/api/v1/files/{file_id}").json()
        parts = api.get(f"/api/v1/uploads/{file_id}/parts").json()
    assert record["status"] == "pending"

    async def complete() -> None:
        storage = build_storage(harness.service.settings)
        try:
            await storage.complete_multipart(
                record["key"],
                parts["upload_id"],
                [CompletedPart(p["part_number"], p["etag"], _b64(p)) for p in parts["parts"]],
            )
        finally:
            await storage.close()

    asyncio.run(complete())


def test_an_upload_completed_in_the_store_is_confirmed_not_begun_again(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    path, digest = make_file(SIZE)
    state = stopped_at_complete(harness, path)
    complete_in_the_store_only(harness, state["file_id"])

    mark = len(harness.proxy.snapshot())
    with harness.client(concurrency=2) as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert remote.id == state["file_id"]
    assert remote.status == "uploaded"
    assert harness.proxy.parts_sent(since=mark) == []
    assert sha256_of(out) == digest
    assert harness.states() == []
    with harness.api() as api:
        assert len(api.get("/api/v1/files").json()["items"]) == 1  # no second upload


def test_an_upload_completed_on_the_server_is_reported_done(
    harness: Harness, make_file: MakeFile
) -> None:
    path, _ = make_file(SIZE)
    state = stopped_at_complete(harness, path)
    with harness.api() as api:
        assert api.post(f"/api/v1/uploads/{state['file_id']}/complete").status_code == 200

    with harness.client(concurrency=2) as client:
        remote = client.upload(path)
    assert remote.id == state["file_id"]
    assert remote.status == "uploaded"
    assert harness.states() == []
