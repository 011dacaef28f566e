"""The create call itself interrupted: the answer lost on the way, or the client killed before
it saved the answer. The upload it began is the one the client goes on with, never a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bigupload.client.resume import StateStore
from tests.support.faults import FaultPlan
from tests.support.harness import PART, Harness, MakeFile, sha256_of

CREATE = "POST /api/v1/uploads"


def files_on_server(harness: Harness) -> list[dict[str, Any]]:
    with harness.api() as api:
        items: list[dict[str, Any]] = api.get("/api/v1/files").json()["items"]
    return items


def keys_saved(harness: Harness) -> list[Path]:
    return sorted(harness.cache_dir.glob("*.key")) if harness.cache_dir.is_dir() else []


def killed_before_saving_the_ticket(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, path: Path, **options: Any
) -> dict[str, Any]:
    """Upload ``path`` but die (as SIGKILL would: no clean-up) at the first state save, right
    after the server answered the create; answer the file the server then holds."""

    def killed(*_: Any) -> None:
        raise SystemExit("killed")

    with monkeypatch.context() as patch:
        patch.setattr(StateStore, "save", killed)
        with harness.client() as client, pytest.raises(SystemExit):
            client.upload(path, **options)
    [begun] = files_on_server(harness)
    assert begun["status"] == "pending"
    assert harness.states() == [] and len(keys_saved(harness)) == 1
    return begun


@pytest.mark.parametrize("size", [PART // 2, 3 * PART + 17], ids=["single-put", "multipart"])
def test_a_run_killed_before_it_saved_the_ticket_goes_on_with_that_upload(
    harness: Harness,
    make_file: MakeFile,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    size: int,
) -> None:
    path, digest = make_file(size)
    begun = killed_before_saving_the_ticket(harness, monkeypatch, path)
    with harness.client() as client:
        remote = client.upload(path)
        assert remote.id == begun["id"]
        out = client.download(remote.id, tmp_path / "out.bin")
    assert sha256_of(out) == digest
    assert [f["id"] for f in files_on_server(harness)] == [begun["id"]]
    assert harness.states() == [] and keys_saved(harness) == []


def test_a_key_whose_upload_ended_meanwhile_begins_a_new_upload(
    harness: Harness, make_file: MakeFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = make_file(PART // 2)
    begun = killed_before_saving_the_ticket(harness, monkeypatch, path)
    with harness.api() as api:  # as the expiry sweep would end it
        assert api.delete(f"/api/v1/uploads/{begun['id']}").status_code == 200
    with harness.client() as client:
        remote = client.upload(path)
    assert remote.id != begun["id"] and remote.status == "uploaded"
    assert {f["id"]: f["status"] for f in files_on_server(harness)} == {
        begun["id"]: "aborted",
        remote.id: "uploaded",
    }
    assert keys_saved(harness) == []


def test_a_rerun_with_other_options_aborts_the_upload_it_never_learnt_of(
    harness: Harness, make_file: MakeFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = make_file(PART // 2)
    begun = killed_before_saving_the_ticket(harness, monkeypatch, path, metadata={"take": "1"})
    with harness.client() as client:
        remote = client.upload(path, metadata={"take": "2"})
    assert remote.id != begun["id"] and remote.metadata == {"take": "2"}
    assert {f["id"]: f["status"] for f in files_on_server(harness)} == {
        begun["id"]: "aborted",
        remote.id: "uploaded",
    }


@pytest.mark.parametrize("resume", [True, False])
def test_a_create_whose_answer_was_lost_is_retried_into_the_same_upload(
    harness: Harness, make_file: MakeFile, resume: bool
) -> None:
    path, _ = make_file(3 * PART)
    harness.proxy.plan = FaultPlan(explicit={CREATE: ["drop_after"]})
    with harness.client() as client:
        remote = client.upload(path, resume=resume)
    creates = [r for r in harness.proxy.snapshot() if r.identity == CREATE]
    assert [r.fault for r in creates] == ["drop_after", None]
    assert [f["id"] for f in files_on_server(harness)] == [remote.id]
    assert remote.status == "uploaded"
