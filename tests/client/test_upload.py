"""Uploads and downloads through a real service: one PUT, parts, the file API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bigupload.client import (
    Client,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    Progress,
    RetryPolicy,
)
from tests.support.harness import PART, Harness, MakeFile, sha256_of
from tests.support.service import live_service

MiB = 1024 * 1024


def test_small_file_goes_in_one_put(harness: Harness, make_file: MakeFile, tmp_path: Path) -> None:
    path, digest = make_file(3 * MiB + 7, "notes.txt")
    seen: list[Progress] = []
    with harness.client() as client:
        remote = client.upload(path, progress=seen.append, metadata={"album": "2026"})
        assert remote.status == "uploaded"
        assert remote.filename == "notes.txt"
        assert remote.content_type == "text/plain"
        assert remote.stored_size == remote.size == path.stat().st_size
        assert remote.checksum_sha256 == digest  # declared, so the store checked it
        assert remote.metadata == {"album": "2026"}
        out = client.download(remote.id, tmp_path / "out.txt")
    assert sha256_of(out) == digest
    puts = [r for r in harness.proxy.snapshot() if r.method == "PUT"]
    assert [r.identity for r in puts] == ["PUT object"]
    assert seen[-1].bytes_done == seen[-1].total == path.stat().st_size
    assert harness.states() == []


def test_large_file_goes_in_parallel_parts(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    path, digest = make_file(4 * PART + 12345)
    seen: list[Progress] = []
    with harness.client(concurrency=4) as client:
        remote = client.upload(path, progress=seen.append)
        assert remote.status == "uploaded"
        assert remote.stored_size == path.stat().st_size
        out = client.download(remote.id, tmp_path / "copy.bin")
    assert sha256_of(out) == digest
    parts = harness.proxy.parts_sent()
    assert sorted(r.part_number for r in parts) == [1, 2, 3, 4, 5]
    assert all(r.status == 200 for r in parts)
    done = [p.bytes_done for p in seen]
    assert done == sorted(done), "progress never goes back"
    assert done[-1] == path.stat().st_size
    assert harness.states() == []


def test_multipart_can_be_asked_for_and_refused(harness: Harness, make_file: MakeFile) -> None:
    small, _ = make_file(6 * MiB, "small.bin")
    big, _ = make_file(9 * MiB, "big.bin")
    with harness.client() as client:
        client.upload(small, multipart=True)
        client.upload(big, multipart=False)
    parts = harness.proxy.parts_sent()
    assert sorted(r.part_number for r in parts) == [1, 2]
    assert [r.identity for r in harness.proxy.snapshot() if r.method == "PUT"].count(
        "PUT object"
    ) == 1


def test_part_size_is_asked_for(harness: Harness, make_file: MakeFile) -> None:
    path, _ = make_file(13 * MiB)
    with harness.client(part_size=6 * MiB) as client:
        client.upload(path)
    assert sorted(r.part_number for r in harness.proxy.parts_sent()) == [1, 2, 3]


def test_files_api(harness: Harness, make_file: MakeFile, tmp_path: Path) -> None:
    with harness.client() as client:
        ids = []
        for i in range(5):
            path, _ = make_file(1000 + i, f"f{i}.bin")
            ids.append(client.upload(path).id)
        listed = [f.id for f in client.list(page_size=2)]
        assert sorted(listed) == sorted(ids)
        assert len(list(client.list(limit=3, page_size=2))) == 3
        first = client.page(limit=2)
        assert len(first.items) == 2 and first.next_cursor
        second = client.page(limit=2, cursor=first.next_cursor)
        assert {f.id for f in first.items}.isdisjoint(f.id for f in second.items)
        assert list(client.list(status="aborted")) == []
        assert client.info(ids[0]).filename == "f0.bin"
        client.delete(ids[0])
        with pytest.raises(NotFoundError) as missing:
            client.info(ids[0])
        assert missing.value.status == 404
        assert missing.value.code == "file_not_found"
        with pytest.raises(NotFoundError):
            client.download(ids[0], tmp_path / "gone")
        with pytest.raises(NotFoundError):
            client.info("not-a-uuid/../../x")


def test_download_never_overwrites_unless_asked(
    harness: Harness, make_file: MakeFile, tmp_path: Path
) -> None:
    path, digest = make_file(2 * MiB, "report.pdf")
    out_dir = tmp_path / "downloads"
    out_dir.mkdir()
    with harness.client() as client:
        remote = client.upload(path)
        assert remote.content_type == "application/pdf"
        first = client.download(remote.id, out_dir)  # a directory: the file's own name
        assert first == out_dir / "report.pdf"
        first.write_bytes(b"mine")
        with pytest.raises(FileExistsError):
            client.download(remote.id, out_dir)
        assert first.read_bytes() == b"mine"
        client.download(remote.id, first, overwrite=True)
    assert sha256_of(first) == digest
    assert sorted(p.name for p in out_dir.iterdir()) == ["report.pdf"]  # no temporary left


def test_a_pending_file_cannot_be_downloaded(harness: Harness, tmp_path: Path) -> None:
    with harness.api() as api:
        created = api.post(
            "/api/v1/uploads",
            json={"filename": "x.bin", "content_type": "application/octet-stream", "size": 10},
        ).json()
    with harness.client() as client, pytest.raises(ConflictError) as refused:
        client.download(created["id"], tmp_path / "x.bin")
    assert refused.value.code == "file_not_ready"
    assert not (tmp_path / "x.bin").exists()


def test_refusals_are_typed(harness: Harness, make_file: MakeFile, tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.touch()
    path, _ = make_file(10, "ok.bin")
    with harness.client() as client:
        with pytest.raises(InvalidRequestError) as nothing:
            client.upload(empty)
        assert nothing.value.code == "empty_file"
        with pytest.raises(InvalidRequestError) as bad:
            client.upload(path, content_type="not a type")
        assert bad.value.status == 422
        with pytest.raises(FileNotFoundError):
            client.upload(tmp_path / "missing.bin")


@pytest.fixture
def moto_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with live_service(
        request, tmp_path, "s3-moto", multipart_threshold=8 * MiB, part_size=PART
    ) as service:
        yield service.url, service.api_key


def test_round_trip_through_s3(
    moto_service: tuple[str, str], make_file: MakeFile, tmp_path: Path
) -> None:
    url, key = moto_service
    fast = RetryPolicy(retries=3, backoff=0.01)
    with Client(url, key, concurrency=3, cache_dir=tmp_path / "cache", retries=fast) as client:
        for size, multipart in ((2 * MiB, None), (3 * PART + 99, True)):
            path, digest = make_file(size, f"s3-{size}.bin")
            remote = client.upload(path, multipart=multipart)
            assert remote.stored_size == size
            assert sha256_of(client.download(remote.id, tmp_path / f"out-{size}")) == digest
