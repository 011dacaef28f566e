"""Steps the Uppy route tests take, as ``@uppy/aws-s3`` takes them."""

from __future__ import annotations

import random
import uuid
from typing import Any
from urllib.parse import quote, unquote, urlencode

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from bigupload.files.models import FileRecord
from bigupload.jobs.models import Job
from tests.conftest import Caller

MiB = 1024 * 1024
PART = 5 * MiB
OCTETS = "application/octet-stream"
DATA = random.Random(5).randbytes(2 * PART + 4321)  # three parts, the last short


def part_of(number: int, data: bytes = DATA, part_size: int = PART) -> bytes:
    return data[(number - 1) * part_size : number * part_size]


def query(key: str) -> str:
    return f"key={quote(key, safe='')}"


async def begin(caller: Caller, **body: Any) -> dict[str, Any]:
    """``POST /s3/multipart`` as Uppy 5 sends it."""
    body.setdefault("filename", "movie.mp4")
    body.setdefault("type", "video/mp4")
    body.setdefault("metadata", {"name": "movie.mp4", "type": "video/mp4"})
    response = await caller.post("/s3/multipart", json=body)
    assert response.status_code == 200, response.text
    started: dict[str, Any] = response.json()
    return started


async def sign_part(caller: Caller, started: dict[str, Any], number: int | str) -> httpx.Response:
    return await caller.get(
        f"/s3/multipart/{quote(started['uploadId'], safe='')}/{number}?{query(started['key'])}"
    )


async def put_part(
    caller: Caller, http: httpx.AsyncClient, started: dict[str, Any], number: int
) -> str:
    """Sign part ``number`` of :data:`DATA`, PUT it as a browser does; answer the ETag."""
    signed = await sign_part(caller, started, number)
    assert signed.status_code == 200, signed.text
    answer = signed.json()
    put = await http.put(answer["url"], content=part_of(number), headers=answer.get("headers"))
    assert put.status_code == 200, put.text
    etag: str = put.headers["etag"]
    return etag


async def complete(
    caller: Caller, started: dict[str, Any], parts: list[dict[str, Any]]
) -> httpx.Response:
    return await caller.post(
        f"/s3/multipart/{quote(started['uploadId'], safe='')}/complete?{query(started['key'])}",
        json={"parts": parts},
    )


async def record_of(app: FastAPI, key: str) -> FileRecord:
    async with app.state.sessionmaker() as session:
        found = (
            await session.execute(select(FileRecord).where(FileRecord.key == key))
        ).scalar_one_or_none()
    assert found is not None
    return found


async def jobs_of(app: FastAPI, file_id: uuid.UUID, kind: str) -> list[Job]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(
            select(Job).where(Job.file_id == file_id, Job.kind == kind).order_by(Job.id)
        )
        return list(rows.scalars())


async def form_post_location(caller: Caller, http: httpx.AsyncClient) -> tuple[str, str]:
    """A single upload as Uppy sends it (``/s3/params``, then the form POST): answer the key and
    the ``Location`` the store answered for it."""
    answer = await caller.get(f"/s3/params?{urlencode({'filename': 'one.bin', 'type': OCTETS})}")
    assert answer.status_code == 200, answer.text
    posted = await post_form(http, answer.json(), b"one small file", OCTETS)
    assert posted.status_code in (201, 204), posted.text
    return answer.json()["key"], posted.headers["location"]


def with_key_marked(location: str, key: str) -> str:
    """``location`` with ``key`` (however the store encoded it) shown as ``<key>``, to compare
    the kind of two objects' URLs."""
    plain = unquote(location)
    assert plain.count(key) == 1, (location, key)
    return plain.replace(key, "<key>")


def form_body(fields: dict[str, str], data: bytes, file_type: str) -> tuple[bytes, dict[str, str]]:
    """A ``multipart/form-data`` body as Uppy builds it: the fields in order, the file last."""
    boundary = "----uppy-test-" + uuid.uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\n'
        f"Content-Type: {file_type}\r\n\r\n"
    ).encode()
    out += data + b"\r\n" + f"--{boundary}--\r\n".encode()
    return bytes(out), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def post_form(
    http: httpx.AsyncClient, params: dict[str, Any], data: bytes, file_type: str = "video/mp4"
) -> httpx.Response:
    body, headers = form_body(params["fields"], data, file_type)
    return await http.post(params["url"], content=body, headers=headers)
