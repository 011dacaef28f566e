"""Interrupted uploads resume: only the missing parts are sent, and only when they can be."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bigupload.client import FileChangedError, Progress, UploadInProgressError
from bigupload.client.resume import FileIdentity, StateStore
from tests.support.faults import FaultPlan
from tests.support.harness import PART, Harness, MakeFile, sha256_of

PARTS = 6
SIZE = PARTS * PART - 1000


def stall_after_two_parts(harness: Harness) -> None:
    """Parts 3 and later are answered 503 with a long Retry-After: the workers wait (until the
    transfer stops) while parts 1 and 2 land."""
    harness.proxy.plan = FaultPlan(
        explicit={f"PUT part {n}": ["503"] for n in range(3, PARTS + 1)}, retry_after="600"
    )


def interrupt_once_stored(harness: Harness, numbers: set[int]) -> Any:
    """A progress callback that presses Ctrl-C once the store holds parts ``numbers``."""

    def progress(_: Progress) -> None:
        landed = {r.part_number for r in harness.proxy.parts_sent() if r.status == 200}
        if numbers <= landed:
            raise KeyboardInterrupt

    return progress


def interrupted_upload(harness: Harness, path: Path, **options: Any) -> dict[str, Any]:
    """Upload ``path`` until parts 1 and 2 are stored, then Ctrl-C; answer the saved state."""
    stall_after_two_parts(harness)
    with harness.client(concurrency=2) as client, pytest.raises(KeyboardInterrupt):
        client.upload(path, progress=interrupt_once_stored(harness, {1, 2}), **options)
    harness.proxy.plan = FaultPlan()
    [state_file] = harness.states()
    state: dict[str, Any] = json.loads(state_file.read_text())
    return state


def held_parts(harness: Harness, file_id: str) -> set[int]:
    with harness.api() as api:
        answer = api.get(f"/api/v1/uploads/{file_id}/parts")
    assert answer.status_code == 200, answer.text
    return {p["part_number"] for p in answer.json()["parts"]}


def status_of(harness: Harness, file_id: str) -> str:
    with harness.api() as api:
        status: str = api.get(f"/api/v1/files/{file_id}").json()["status"]
    return status


def test_an_interrupted_upload_sends_only_the_missing_parts(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    path, digest = make_file(SIZE)
    state = interrupted_upload(harness, path)
    assert state["method"] == "multipart"
    assert held_parts(harness, state["file_id"]) == {1, 2}

    mark = len(harness.proxy.snapshot())
    seen: list[Progress] = []
    with harness.client(concurrency=2) as client:
        remote = client.upload(path, progress=seen.append)
        assert remote.id == state["file_id"]
        assert remote.status == "uploaded"
        out = client.download(remote.id, tmp_path / "out.bin")
    assert sorted(r.part_number for r in harness.proxy.parts_sent(since=mark)) == [3, 4, 5, 6]
    assert seen[0].bytes_done == 2 * PART, "resumed parts count as done at once"
    assert seen[-1].bytes_done == SIZE
    assert sha256_of(out) == digest
    assert harness.states() == []


def change_in_place(path: Path) -> str:
    """Change the first bytes of ``path`` and put its time back: only the bytes tell."""
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.write(b"\0" * 16)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return sha256_of(path)


def test_a_stored_part_with_other_bytes_is_sent_again(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    """The state and the store agree on part 1, but the local file's part 1 is not those bytes
    any more: the part's checksum gives it away (multipart asked for, so no whole-file
    checksum was declared)."""
    path, _ = make_file(SIZE)
    state = interrupted_upload(harness, path, multipart=True)
    digest = change_in_place(path)

    mark = len(harness.proxy.snapshot())
    with harness.client(concurrency=2) as client:
        remote = client.upload(path, multipart=True)
        assert remote.id == state["file_id"]
        out = client.download(remote.id, tmp_path / "out.bin")
    assert sorted(r.part_number for r in harness.proxy.parts_sent(since=mark)) == [1, 3, 4, 5, 6]
    assert sha256_of(out) == digest


def test_a_file_declared_whole_and_changed_in_place_starts_over(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    path, _ = make_file(SIZE)
    state = interrupted_upload(harness, path)
    digest = change_in_place(path)
    with harness.client(concurrency=2) as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert remote.id != state["file_id"]
    assert status_of(harness, state["file_id"]) == "aborted"
    assert sha256_of(out) == digest


def test_a_changed_file_starts_over_and_the_old_upload_is_aborted(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    path, _ = make_file(SIZE)
    state = interrupted_upload(harness, path)
    with path.open("ab") as handle:
        handle.write(b"more")
    digest = sha256_of(path)

    mark = len(harness.proxy.snapshot())
    with harness.client(concurrency=2) as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert remote.id != state["file_id"]
    assert status_of(harness, state["file_id"]) == "aborted"
    assert sorted(r.part_number for r in harness.proxy.parts_sent(since=mark)) == list(
        range(1, PARTS + 1)
    )
    assert sha256_of(out) == digest
    assert harness.states() == []


def test_an_upload_aborted_on_the_server_starts_over(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    path, digest = make_file(SIZE)
    state = interrupted_upload(harness, path)
    with harness.api() as api:
        assert api.delete(f"/api/v1/uploads/{state['file_id']}").status_code == 200

    mark = len(harness.proxy.snapshot())
    with harness.client(concurrency=2) as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert remote.id != state["file_id"]
    assert len(harness.proxy.parts_sent(since=mark)) == PARTS
    assert sha256_of(out) == digest


def test_an_upload_deleted_on_the_server_starts_over(harness: Harness, make_file: MakeFile) -> None:
    path, _ = make_file(SIZE)
    state = interrupted_upload(harness, path)
    with harness.api() as api:
        assert api.delete(f"/api/v1/files/{state['file_id']}").status_code == 204
    with harness.client(concurrency=2) as client:
        remote = client.upload(path)
    assert remote.id != state["file_id"]
    assert remote.stored_size == SIZE


def test_without_resume_an_interrupted_upload_is_aborted(
    harness: Harness, make_file: MakeFile
) -> None:
    path, _ = make_file(SIZE)
    stall_after_two_parts(harness)
    with harness.client(concurrency=2) as client, pytest.raises(KeyboardInterrupt):
        client.upload(path, resume=False, progress=interrupt_once_stored(harness, {1, 2}))
    assert harness.states() == []
    with harness.api() as api:
        [record] = api.get("/api/v1/files").json()["items"]
    assert record["status"] == "aborted"


def test_a_single_put_interrupted_before_complete_is_completed(
    harness: Harness, make_file: MakeFile
) -> None:
    """Stopped after the store took the bytes, before the server was told: the next run only
    completes it."""
    path, _ = make_file(3 * 1024 * 1024)

    def stop_when_sent(p: Progress) -> None:
        if p.bytes_done == p.total:
            raise KeyboardInterrupt

    with harness.client() as client, pytest.raises(KeyboardInterrupt):
        client.upload(path, progress=stop_when_sent)
    [state_file] = harness.states()
    file_id = json.loads(state_file.read_text())["file_id"]
    mark = len(harness.proxy.snapshot())
    with harness.client() as client:
        remote = client.upload(path)
    assert remote.id == file_id and remote.status == "uploaded"
    assert [r.method for r in harness.proxy.snapshot()[mark:] if r.method == "PUT"] == []
    assert harness.states() == []


def test_a_single_put_interrupted_midway_starts_over(harness: Harness, make_file: MakeFile) -> None:
    path, digest = make_file(3 * 1024 * 1024)

    def stop_midway(p: Progress) -> None:
        if 0 < p.bytes_done < p.total:
            raise KeyboardInterrupt

    with harness.client() as client, pytest.raises(KeyboardInterrupt):
        client.upload(path, progress=stop_midway)
    [state_file] = harness.states()
    old = json.loads(state_file.read_text())["file_id"]
    with harness.client() as client:
        remote = client.upload(path)
    assert remote.id != old
    assert remote.checksum_sha256 == digest
    assert status_of(harness, old) == "aborted"


def test_one_file_is_uploaded_by_one_process_at_a_time(
    harness: Harness, make_file: MakeFile
) -> None:
    path, _ = make_file(1000)
    identity = FileIdentity.of(harness.url, path)
    with StateStore(harness.cache_dir).lock(identity):
        with harness.client() as client, pytest.raises(UploadInProgressError) as busy:
            client.upload(path)
        assert str(path.resolve()) in str(busy.value)
    with harness.client() as client:
        assert client.upload(path).status == "uploaded"


def test_a_file_changed_during_the_upload_is_refused(harness: Harness, make_file: MakeFile) -> None:
    path, _ = make_file(SIZE)
    changed = []

    def change(p: Progress) -> None:
        if p.bytes_done >= PART and not changed:
            with path.open("r+b") as handle:
                handle.seek(SIZE - 10)
                handle.write(b"x" * 10)
            changed.append(True)

    with harness.client(concurrency=2) as client, pytest.raises(FileChangedError):
        client.upload(path, progress=change)
