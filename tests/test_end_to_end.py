"""End to end over real HTTP: create, PUT with a plain client, complete, download, compare.

The service runs under uvicorn on a loopback port; the bytes go to the store with exactly the
URL and headers the ticket gives: to bigupload's own store, or to an S3 server over HTTP.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.service import STORES, live_service


@pytest.fixture(params=STORES)
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with live_service(request, tmp_path, request.param) as live:
        yield live.url, live.api_key


def _file(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "payload.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("declare_checksum", [False, True], ids=["plain", "checksum"])
def test_upload_complete_download(
    service: tuple[str, str], tmp_path: Path, declare_checksum: bool
) -> None:
    base, api_key = service
    path, digest = _file(tmp_path, 5 * 1024 * 1024 + 123)
    auth = {"Authorization": f"Bearer {api_key}"}
    with (
        httpx.Client(base_url=base, headers=auth, timeout=60) as api,
        httpx.Client(timeout=60) as plain,
    ):
        body: dict[str, Any] = {
            "filename": "Übung «draft».bin",
            "content_type": "application/octet-stream",
            "size": path.stat().st_size,
        }
        if declare_checksum:
            body["checksum_sha256"] = digest
        created = api.post("/api/v1/uploads", json=body)
        assert created.status_code == 201, created.text
        ticket = created.json()

        with path.open("rb") as handle:
            put = plain.request(
                ticket["method"], ticket["url"], headers=ticket["headers"], content=handle.read()
            )
        assert put.status_code == 200, put.text

        done = api.post(f"/api/v1/uploads/{ticket['id']}/complete")
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "uploaded"
        assert done.json()["stored_size"] == path.stat().st_size

        link = api.get(f"/api/v1/files/{ticket['id']}/download").json()
        with plain.stream("GET", link["url"]) as got:
            assert got.status_code == 200
            hasher = hashlib.sha256()
            for chunk in got.iter_bytes():
                hasher.update(chunk)
            disposition = got.headers["content-disposition"]
        assert hasher.hexdigest() == digest
        assert "filename*=UTF-8''%C3%9Cbung%20%C2%ABdraft%C2%BB.bin" in disposition

        assert api.delete(f"/api/v1/files/{ticket['id']}").status_code == 204
        # 404, or 403 from stores that hide missing keys from callers without ListBucket.
        assert plain.get(link["url"]).status_code in (403, 404)


@pytest.mark.parametrize(
    "service", ["local", pytest.param("s3-strict", marks=pytest.mark.strict_s3)], indirect=True
)
def test_the_store_refuses_a_tampered_url_and_nothing_lands(
    service: tuple[str, str], tmp_path: Path
) -> None:
    base, api_key = service
    data = b"tamper" * 1000
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"}) as api:
        ticket = api.post(
            "/api/v1/uploads",
            json={
                "filename": "t.bin",
                "content_type": "application/octet-stream",
                "size": len(data),
            },
        ).json()
        url = ticket["url"]
        flipped = url[:-3] + ("A" if url[-3] != "A" else "B") + url[-2:]
        put = httpx.put(flipped, headers=ticket["headers"], content=data)
        assert put.status_code == 403
        done = api.post(f"/api/v1/uploads/{ticket['id']}/complete")
        assert done.status_code == 409
        assert done.json()["error"]["code"] == "upload_incomplete"


@pytest.mark.parametrize(
    "service", ["local", pytest.param("s3-strict", marks=pytest.mark.strict_s3)], indirect=True
)
def test_a_replayed_url_cannot_replace_the_stored_file(service: tuple[str, str]) -> None:
    base, api_key = service
    data, other = b"first" * 1000, b"other" * 1000
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"}) as api:
        ticket = api.post(
            "/api/v1/uploads",
            json={
                "filename": "r.bin",
                "content_type": "application/octet-stream",
                "size": len(data),
            },
        ).json()
        assert httpx.put(ticket["url"], headers=ticket["headers"], content=data).status_code == 200
        assert api.post(f"/api/v1/uploads/{ticket['id']}/complete").status_code == 200
        replay = httpx.put(ticket["url"], headers=ticket["headers"], content=other)
        assert replay.status_code == 412
        link = api.get(f"/api/v1/files/{ticket['id']}/download").json()
        assert httpx.get(link["url"]).content == data
