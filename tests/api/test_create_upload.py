"""``POST /api/v1/uploads``: the ticket it answers and every validation rule, with exact codes."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bigupload.files.models import FileEvent, FileRecord
from tests.api.helpers import send, start, upload_request
from tests.conftest import Caller

GiB = 1024**3


async def count_files(caller: Caller) -> int:
    app = caller.http._transport.app  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(FileRecord)) or 0)


async def test_ticket_has_the_seed_fields_and_a_signed_put(alice: Caller) -> None:
    before = datetime.now().astimezone()
    response = await alice.post("/api/v1/uploads", json=upload_request(b"x" * 10))
    assert response.status_code == 201
    ticket = response.json()
    assert set(ticket) == {
        "id",
        "key",
        "bucket",
        "status",
        "method",
        "url",
        "headers",
        "expires_at",
    }
    assert ticket["status"] == "pending"
    assert ticket["method"] == "PUT"
    assert ticket["headers"] == {"Content-Type": "video/mp4", "If-None-Match": "*"}
    assert response.headers["location"] == f"/api/v1/files/{ticket['id']}"
    expires = datetime.fromisoformat(ticket["expires_at"])
    assert before + timedelta(seconds=890) < expires < before + timedelta(seconds=910)
    assert ticket["url"].startswith("http://testserver/store/")


async def test_key_is_made_by_the_server_never_from_the_filename(alice: Caller) -> None:
    ticket = await start(alice, b"abc", filename="../../etc/passwd.mp4".replace("/", "_"))
    now = datetime.now().astimezone()
    assert re.fullmatch(rf"uploads/alice/{now:%Y}/{now:%m}/{ticket['id']}", ticket["key"]), ticket[
        "key"
    ]
    assert "passwd" not in ticket["url"]


async def test_seed_aliases_are_accepted(alice: Caller) -> None:
    response = await alice.post(
        "/api/v1/uploads",
        json={"fileName": "a.pdf", "fileType": "application/pdf", "fileSize": 1234},
    )
    assert response.status_code == 201, response.text
    record = (await alice.get(f"/api/v1/files/{response.json()['id']}")).json()
    assert (record["filename"], record["content_type"], record["size"]) == (
        "a.pdf",
        "application/pdf",
        1234,
    )
    assert record["status"] == "pending"


async def test_record_and_first_event_are_written(alice: Caller) -> None:
    ticket = await start(alice, b"abcdef", metadata={"album": "2026", "by": "me"})
    app = alice.http._transport.app  # type: ignore[attr-defined]
    async with app.state.sessionmaker() as session:
        record = await session.get(FileRecord, uuid.UUID(ticket["id"]))
        events = (
            (await session.execute(select(FileEvent).where(FileEvent.file_id == record.id)))
            .scalars()
            .all()
        )
    assert record is not None
    assert record.owner == "alice"
    assert record.user_metadata == {"album": "2026", "by": "me"}
    assert [(e.from_status, e.to_status) for e in events] == [(None, "pending")]


async def test_checksum_is_signed_and_returned_as_a_header(alice: Caller) -> None:
    data = b"payload"
    digest = hashlib.sha256(data).digest()
    for given in (digest.hex(), digest.hex().upper(), base64.b64encode(digest).decode()):
        ticket = await start(alice, data, checksum_sha256=given)
        assert ticket["headers"]["x-amz-checksum-sha256"] == base64.b64encode(digest).decode()
        record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
        assert record["checksum_sha256"] == digest.hex()


async def test_content_type_is_normalised(alice: Caller) -> None:
    ticket = await start(alice, b"abc", content_type="Text/Plain; charset=utf-8")
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert record["content_type"] == "text/plain; charset=utf-8"
    assert ticket["headers"]["Content-Type"] == "text/plain; charset=utf-8"


async def test_unicode_filename_is_kept_in_nfc(alice: Caller) -> None:
    decomposed = "re\u0301sume\u0301 final.pdf"
    ticket = await start(alice, b"abc", filename=decomposed)
    record = (await alice.get(f"/api/v1/files/{ticket['id']}")).json()
    assert record["filename"] == "r\u00e9sum\u00e9 final.pdf"


BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("missing filename", {"filename": None}, "filename"),
    ("empty filename", {"filename": ""}, "filename"),
    ("blank filename", {"filename": "   "}, "filename"),
    ("filename too long", {"filename": "a" * 256}, "filename"),
    ("filename with NUL", {"filename": "a\x00b.mp4"}, "filename"),
    ("filename with newline", {"filename": "a\nb.mp4"}, "filename"),
    ("filename with DEL", {"filename": "a\x7fb.mp4"}, "filename"),
    ("filename with bidi override", {"filename": "invoice\u202efdp.exe"}, "filename"),
    ("filename is a path", {"filename": "../../etc/passwd"}, "filename"),
    ("filename with backslash", {"filename": "C:\\fakepath\\a.mp4"}, "filename"),
    ("filename is dot-dot", {"filename": ".."}, "filename"),
    ("filename is a number", {"filename": 42}, "filename"),
    ("missing content type", {"content_type": None}, "content_type"),
    ("content type without subtype", {"content_type": "video"}, "content_type"),
    ("content type with spaces", {"content_type": "video/ mp4"}, "content_type"),
    ("content type with CRLF", {"content_type": "video/mp4\r\nX-Evil: 1"}, "content_type"),
    ("content type too long", {"content_type": "a/" + "b" * 300}, "content_type"),
    ("content type is a list", {"content_type": ["video/mp4"]}, "content_type"),
    ("missing size", {"size": None}, "size"),
    ("zero size", {"size": 0}, "size"),
    ("negative size", {"size": -1}, "size"),
    ("fractional size", {"size": 10.5}, "size"),
    ("size as a string", {"size": "10"}, "size"),
    ("size as a boolean", {"size": True}, "size"),
    ("checksum not hex nor base64", {"checksum_sha256": "xyz"}, "checksum_sha256"),
    ("checksum of the wrong length", {"checksum_sha256": "ab" * 20}, "checksum_sha256"),
    ("metadata not strings", {"metadata": {"a": 1}}, "metadata.a"),
    ("metadata too many entries", {"metadata": {str(i): "v" for i in range(33)}}, "metadata"),
    ("metadata too large", {"metadata": {"a": "v" * 9000}}, "metadata"),
    ("unknown field", {"colour": "red"}, "colour"),
    ("multipart as a string", {"multipart": "yes"}, "multipart"),
    ("part size as a string", {"part_size": "8MiB"}, "part_size"),
    ("zero part size", {"part_size": 0}, "part_size"),
    ("negative part size", {"part_size": -5}, "part_size"),
    ("part checksums as a number", {"part_checksums": 1}, "part_checksums"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
async def test_invalid_fields_are_refused_with_422(
    alice: Caller, case: str, change: dict[str, Any], field: str
) -> None:
    body = upload_request(b"x" * 10)
    for name, value in change.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value
    response = await alice.post("/api/v1/uploads", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]], error
    assert await count_files(alice) == 0


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"filename": "caf\xe9.mp4"}', b"\xff\xfe{}"],
    ids=["syntax", "latin-1", "utf-16"],
)
async def test_body_that_is_not_utf8_json_is_refused(alice: Caller, body: bytes) -> None:
    """Not JSON, or JSON not in UTF-8: one answer, 400 ``invalid_json``, before any schema."""
    response = await alice.post(
        "/api/v1/uploads", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"
    assert isinstance(response.json()["error"]["details"]["offset"], int)
    assert await count_files(alice) == 0


async def test_body_that_is_a_list_is_refused(alice: Caller) -> None:
    response = await alice.post("/api/v1/uploads", json=[upload_request(b"x")])
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


class TestLimits:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {
            "max_file_size": "1GiB",
            "max_single_put_size": "100MiB",
            "allowed_content_types": "video/*,application/pdf",
        }

    async def test_type_outside_the_allow_list_is_415(self, alice: Caller) -> None:
        response = await alice.post(
            "/api/v1/uploads", json=upload_request(b"x", content_type="application/x-msdownload")
        )
        assert response.status_code == 415
        error = response.json()["error"]
        assert error["code"] == "content_type_not_allowed"
        assert error["details"] == {"allowed": ["video/*", "application/pdf"]}
        assert await count_files(alice) == 0

    async def test_types_inside_the_allow_list_pass(self, alice: Caller) -> None:
        for content_type in ("video/webm", "application/pdf", "VIDEO/MP4"):
            response = await alice.post(
                "/api/v1/uploads", json=upload_request(b"x", content_type=content_type)
            )
            assert response.status_code == 201, (content_type, response.text)

    @pytest.mark.parametrize("size", [GiB + 1, 10**30, 6 * 1024**4])
    async def test_too_large_is_413(self, alice: Caller, size: int) -> None:
        response = await alice.post("/api/v1/uploads", json=upload_request(b"", size=size))
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "file_too_large"
        assert error["details"] == {"max_size": GiB}
        assert await count_files(alice) == 0

    async def test_a_single_put_above_its_limit_is_413(self, alice: Caller) -> None:
        size = 100 * 1024**2 + 1
        response = await alice.post(
            "/api/v1/uploads", json=upload_request(b"", size=size, multipart=False)
        )
        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "file_too_large"
        assert error["details"] == {"max_single_put_size": 100 * 1024**2}
        assert await count_files(alice) == 0

    async def test_above_the_single_put_limit_goes_in_parts(self, alice: Caller) -> None:
        size = 100 * 1024**2 + 1
        response = await alice.post("/api/v1/uploads", json=upload_request(b"", size=size))
        assert response.status_code == 201, response.text
        assert response.json()["method"] == "multipart"

    async def test_exactly_the_limit_passes(self, alice: Caller) -> None:
        size = 100 * 1024**2
        response = await alice.post("/api/v1/uploads", json=upload_request(b"", size=size))
        assert response.status_code == 201


async def test_the_signed_url_refuses_a_body_of_another_size(alice: Caller) -> None:
    ticket = await start(alice, b"x" * 100)
    response = await send(alice.http, ticket, b"x" * 99)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "size_mismatch"
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 409
    assert done.json()["error"]["code"] == "upload_incomplete"


async def test_a_huge_json_body_is_413_without_being_read(alice: Caller) -> None:
    body = upload_request(b"x", metadata={"a": "v" * 1_100_000})
    response = await alice.post("/api/v1/uploads", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await count_files(alice) == 0


async def test_a_huge_chunked_json_body_is_413(alice: Caller) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(300):
            yield b" " * 4096

    response = await alice.post(
        "/api/v1/uploads", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await count_files(alice) == 0
