"""``/api/v1/files``: list with cursors and filters, info, download, status changes, delete."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bigupload.files.models import FileEvent
from bigupload.storage.local import LocalStorage
from tests.api.helpers import start, uploaded
from tests.conftest import Caller


async def test_pages_walk_every_file_once_newest_first(alice: Caller) -> None:
    ids = [(await start(alice, b"x", filename=f"f{i}.mp4"))["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await alice.get("/api/v1/files", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


async def test_filter_by_status(alice: Caller) -> None:
    done = await uploaded(alice, b"done")
    pending = (await start(alice, b"pending"))["id"]
    only_uploaded = (await alice.get("/api/v1/files", params={"status": "uploaded"})).json()
    assert [item["id"] for item in only_uploaded["items"]] == [done["id"]]
    both = await alice.get("/api/v1/files", params=[("status", "uploaded"), ("status", "pending")])
    assert {item["id"] for item in both.json()["items"]} == {done["id"], pending}


async def test_filter_by_type_and_date(alice: Caller) -> None:
    video = (await start(alice, b"v", content_type="video/webm"))["id"]
    pdf = (await start(alice, b"p", content_type="application/pdf"))["id"]
    by_range = (await alice.get("/api/v1/files", params={"content_type": "video/*"})).json()
    assert [item["id"] for item in by_range["items"]] == [video]
    exact = (await alice.get("/api/v1/files", params={"content_type": "application/pdf"})).json()
    assert [item["id"] for item in exact["items"]] == [pdf]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (await alice.get("/api/v1/files", params={"created_after": future})).json()[
        "items"
    ] == []
    assert (
        len((await alice.get("/api/v1/files", params={"created_after": past})).json()["items"]) == 2
    )
    assert (
        len((await alice.get("/api/v1/files", params={"created_before": future})).json()["items"])
        == 2
    )


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"status": "bogus"}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"limit": 201}, "validation_error"),
        ({"limit": "ten"}, "validation_error"),
        ({"cursor": "not-a-cursor"}, "invalid_cursor"),
        ({"created_after": "2026-01-01T00:00:00"}, "validation_error"),
    ],
)
async def test_bad_list_parameters_are_422(
    alice: Caller, params: dict[str, object], code: str
) -> None:
    response = await alice.get("/api/v1/files", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


async def test_info_describes_the_file(alice: Caller) -> None:
    record = await uploaded(
        alice, b"12345", filename="notes.txt", content_type="text/plain", metadata={"k": "v"}
    )
    info = (await alice.get(f"/api/v1/files/{record['id']}")).json()
    assert info["filename"] == "notes.txt"
    assert info["content_type"] == "text/plain"
    assert info["size"] == info["stored_size"] == 5
    assert info["metadata"] == {"k": "v"}
    assert info["owner"] == "alice"
    assert info["bucket"] == "local"


@pytest.mark.parametrize(
    ("filename", "disposition"),
    [
        ("report.pdf", 'attachment; filename="report.pdf"'),
        (
            'résumé "final".pdf',
            "attachment; filename=\"resume _final_.pdf\"; filename*=UTF-8''"
            + quote('résumé "final".pdf', safe=""),
        ),
        (
            "日本語.txt",
            "attachment; filename=\"___.txt\"; filename*=UTF-8''" + quote("日本語.txt", safe=""),
        ),
    ],
)
async def test_download_names_the_original_file(
    alice: Caller, filename: str, disposition: str
) -> None:
    data = b"download me" * 10
    record = await uploaded(alice, data, filename=filename)
    link = await alice.get(f"/api/v1/files/{record['id']}/download")
    assert link.status_code == 200
    body = link.json()
    assert body["method"] == "GET"
    assert body["filename"] == filename
    got = await alice.http.get(body["url"])
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-disposition"] == disposition
    assert got.headers["content-type"] == "video/mp4"


async def test_download_can_redirect(alice: Caller) -> None:
    record = await uploaded(alice, b"abc")
    response = await alice.get(f"/api/v1/files/{record['id']}/download", params={"redirect": True})
    assert response.status_code == 307
    assert response.headers["location"].startswith("http://testserver/store/")


async def test_download_of_a_pending_file_is_409(alice: Caller) -> None:
    ticket = await start(alice, b"abc")
    response = await alice.get(f"/api/v1/files/{ticket['id']}/download")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "file_not_ready"


async def test_download_link_is_not_an_upload_link(alice: Caller) -> None:
    record = await uploaded(alice, b"abc")
    link = (await alice.get(f"/api/v1/files/{record['id']}/download")).json()
    response = await alice.http.put(
        link["url"], content=b"evil", headers={"Content-Type": "video/mp4"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "url_invalid"


LEGAL = [
    ("uploaded", "processing"),
    ("uploaded", "failed"),
    ("processing", "completed"),
    ("processing", "failed"),
    ("pending", "failed"),
]


@pytest.mark.parametrize(("start_status", "target"), LEGAL)
async def test_legal_status_changes(
    app: FastAPI, alice: Caller, start_status: str, target: str
) -> None:
    if start_status == "pending":
        file_id = (await start(alice, b"abc"))["id"]
    else:
        file_id = (await uploaded(alice, b"abc"))["id"]
        if start_status == "processing":
            await alice.put(f"/api/v1/files/{file_id}/status", json={"status": "processing"})
    response = await alice.put(
        f"/api/v1/files/{file_id}/status", json={"status": target, "reason": "because"}
    )
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["status"] == target
    if target == "failed":
        assert record["error"] == "because"
    if target == "completed":
        assert record["completed_at"] is not None
    async with app.state.sessionmaker() as session:
        last = (
            await session.execute(
                select(FileEvent)
                .where(FileEvent.file_id == uuid.UUID(file_id))
                .order_by(FileEvent.id.desc())
                .limit(1)
            )
        ).scalar_one()
    assert (last.from_status, last.to_status, last.reason) == (start_status, target, "because")


ILLEGAL = [
    ("pending", "processing"),
    ("pending", "completed"),
    ("uploaded", "completed"),
    ("completed", "processing"),
    ("completed", "failed"),
    ("failed", "processing"),
    ("failed", "completed"),
]


@pytest.mark.parametrize(("start_status", "target"), ILLEGAL)
async def test_illegal_status_changes_are_409(
    alice: Caller, start_status: str, target: str
) -> None:
    if start_status == "pending":
        file_id = (await start(alice, b"abc"))["id"]
    else:
        file_id = (await uploaded(alice, b"abc"))["id"]
        path = (
            []
            if start_status == "uploaded"
            else {
                "completed": ["processing", "completed"],
                "failed": ["failed"],
            }[start_status]
        )
        for step in path:
            assert (
                await alice.put(f"/api/v1/files/{file_id}/status", json={"status": step})
            ).status_code == 200
    response = await alice.put(f"/api/v1/files/{file_id}/status", json={"status": target})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_transition"
    assert error["details"] == {"from": start_status, "to": target}
    assert (await alice.get(f"/api/v1/files/{file_id}")).json()["status"] == start_status


@pytest.mark.parametrize("body", [{"status": "uploaded"}, {"status": "pending"}, {"status": 3}, {}])
async def test_status_values_clients_cannot_set_are_422(
    alice: Caller, body: dict[str, object]
) -> None:
    file_id = (await start(alice, b"abc"))["id"]
    response = await alice.put(f"/api/v1/files/{file_id}/status", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_delete_removes_object_and_record_and_keeps_the_audit_trail(
    app: FastAPI, alice: Caller, storage: LocalStorage
) -> None:
    record = await uploaded(alice, b"to be deleted")
    assert storage.object_path(record["key"]).exists()
    response = await alice.delete(f"/api/v1/files/{record['id']}")
    assert response.status_code == 204
    assert not storage.object_path(record["key"]).exists()
    assert await storage.stat(record["key"]) is None
    gone = await alice.get(f"/api/v1/files/{record['id']}")
    assert gone.status_code == 404
    async with app.state.sessionmaker() as session:
        trail = (
            (
                await session.execute(
                    select(FileEvent.to_status)
                    .where(FileEvent.file_id == uuid.UUID(record["id"]))
                    .order_by(FileEvent.id)
                )
            )
            .scalars()
            .all()
        )
    assert list(trail) == ["pending", "uploaded", "deleted"]
    again = await alice.delete(f"/api/v1/files/{record['id']}")
    assert again.status_code == 404


async def test_delete_of_a_pending_file_needs_no_object(alice: Caller) -> None:
    ticket = await start(alice, b"abc")
    response = await alice.delete(f"/api/v1/files/{ticket['id']}")
    assert response.status_code == 204
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).status_code == 404


async def test_filter_by_id_prefix(alice: Caller, bob: Caller) -> None:
    ids = [(await start(alice, b"x", filename=f"f{i}.bin"))["id"] for i in range(6)]
    bobs = (await start(bob, b"b"))["id"]
    for file_id in ids:
        for prefix in (file_id[:4], file_id[:9].upper(), file_id[:13].replace("-", "")):
            answer = await alice.get("/api/v1/files", params={"id_prefix": prefix})
            assert answer.status_code == 200, answer.text
            found = [item["id"] for item in answer.json()["items"]]
            expected = [
                i
                for i in reversed(ids)
                if i.replace("-", "").startswith(prefix.replace("-", "").lower())
            ]
            assert found == expected and file_id in found
        whole = await alice.get("/api/v1/files", params={"id_prefix": file_id})
        assert [item["id"] for item in whole.json()["items"]] == [file_id]
    # Owner-scoped: another owner's id is not found by its prefix.
    other = await alice.get("/api/v1/files", params={"id_prefix": bobs[:8]})
    assert bobs not in [item["id"] for item in other.json()["items"]]
    assert [
        i["id"]
        for i in (await bob.get("/api/v1/files", params={"id_prefix": bobs})).json()["items"]
    ] == [bobs]


@pytest.mark.parametrize(
    ("prefix", "code"),
    [
        ("xyz", "validation_error"),
        ("abcd'--", "validation_error"),
        ("a" * 37, "validation_error"),
        ("---", "invalid_id_prefix"),
        ("0" * 33, "invalid_id_prefix"),
    ],
)
async def test_a_bad_id_prefix_is_refused(alice: Caller, prefix: str, code: str) -> None:
    answer = await alice.get("/api/v1/files", params={"id_prefix": prefix})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == code
