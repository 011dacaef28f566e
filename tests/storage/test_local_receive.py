"""What receiving costs the local store, kept cheap without changing what it stores: the join
copies inside the kernel (``copy_file_range``, else ``sendfile``, else reads and writes) and
gives the same bytes every way; one hash per byte (the SHA-256) makes the ETag unless the client
sends ``Content-MD5``, which is checked and then makes S3's MD5 ETag; a client gone mid-body
leaves nothing in ``tmp/``."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bigupload.storage.base import MIN_PART_SIZE, CompletedPart, PartToSign
from bigupload.storage.local import LocalStorage, filecopy
from bigupload.storage.local.paths import path_for
from bigupload.storage.local.spool import WRITE_BUFFER, etag_of
from tests.storage.helpers import local_app, send

KEY = "uploads/alice/2026/12/receive"
FIRST = os.urandom(MIN_PART_SIZE)
LAST = os.urandom(3 * 1024 * 1024 + 17)


def sha_tag(data: bytes) -> str:
    """The local store's ETag of ``data`` sent without Content-MD5."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def md5_tag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def b64_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


async def put_part(
    store: LocalStorage,
    http: httpx.AsyncClient,
    upload_id: str,
    number: int,
    data: bytes,
    **headers: str,
) -> httpx.Response:
    [request] = store.presign_parts(KEY, upload_id, [PartToSign(number, len(data))], expires_in=60)
    return await http.put(request.url, content=data, headers={**request.headers, **headers})


async def joined(store: LocalStorage, http: httpx.AsyncClient) -> bytes:
    """Upload FIRST and LAST as two parts, complete, and answer the object's bytes on disk."""
    upload_id = await store.create_multipart(KEY, content_type="application/octet-stream")
    named = []
    for number, data in ((1, FIRST), (2, LAST)):
        response = await put_part(store, http, upload_id, number, data)
        assert response.status_code == 200, response.text
        named.append(CompletedPart(number, response.headers["etag"]))
    await store.complete_multipart(KEY, upload_id, named)
    return path_for(store.objects, KEY).read_bytes()


def spy(monkeypatch: pytest.MonkeyPatch, name: str, fail: int | None = None) -> list[int]:
    """Count the calls of ``os.<name>``; with ``fail``, each raises that errno instead."""
    real: Callable[..., int] = getattr(os, name)
    calls: list[int] = []

    def wrapped(*args: Any) -> int:
        calls.append(args[2] if name == "copy_file_range" else args[3])
        if fail is not None:
            raise OSError(fail, os.strerror(fail))
        return real(*args)

    monkeypatch.setattr(os, name, wrapped)
    return calls


# -- the join -----------------------------------------------------------------------------------


async def test_the_join_copies_with_copy_file_range(
    local_store: LocalStorage, local_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = spy(monkeypatch, "copy_file_range")
    sent = spy(monkeypatch, "sendfile")
    assert await joined(local_store, local_http) == FIRST + LAST
    assert len(copied) >= 2 and sent == []  # one call per part at least, nothing else
    assert list(local_store.tmp.iterdir()) == []


@pytest.mark.parametrize("refusal", [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL])
async def test_without_copy_file_range_the_join_uses_sendfile(
    local_store: LocalStorage,
    local_http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    refusal: int,
) -> None:
    spy(monkeypatch, "copy_file_range", fail=refusal)
    sent = spy(monkeypatch, "sendfile")
    assert await joined(local_store, local_http) == FIRST + LAST
    assert len(sent) >= 2


async def test_without_either_the_join_reads_and_writes(
    local_store: LocalStorage, local_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy(monkeypatch, "copy_file_range", fail=errno.ENOSYS)
    spy(monkeypatch, "sendfile", fail=errno.EINVAL)
    assert await joined(local_store, local_http) == FIRST + LAST
    stored = await local_store.stat(KEY, with_checksum=True)
    assert stored is not None and stored.checksum_sha256 == hashlib.sha256(FIRST + LAST).hexdigest()


def test_a_method_that_gives_up_part_way_is_taken_over_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * filecopy.BUFFER + 5)
    (tmp_path / "src").write_bytes(data)
    real = os.copy_file_range
    calls = []

    def once_then_refuse(src: int, dst: int, count: int, *offsets: int) -> int:
        calls.append(count)
        if len(calls) > 1:
            raise OSError(errno.EXDEV, "cross-device")
        return real(src, dst, min(count, 1000), *offsets)  # a short copy first

    monkeypatch.setattr(os, "copy_file_range", once_then_refuse)
    with (tmp_path / "src").open("rb") as src, (tmp_path / "dst").open("wb") as dst:
        dst.write(b"head")
        dst.flush()
        method = filecopy.copy(src.fileno(), dst.fileno(), len(data), dst_offset=4)
    assert method == "sendfile"
    assert (tmp_path / "dst").read_bytes() == b"head" + data


def test_a_source_shorter_than_asked_is_an_error_every_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src").write_bytes(b"12345")
    with (tmp_path / "src").open("rb") as src, (tmp_path / "dst").open("wb") as dst:
        with pytest.raises(filecopy.Truncated):
            filecopy.copy(src.fileno(), dst.fileno(), 6)
        spy(monkeypatch, "copy_file_range", fail=errno.ENOSYS)
        spy(monkeypatch, "sendfile", fail=errno.ENOSYS)
        with pytest.raises(filecopy.Truncated):
            filecopy.copy(src.fileno(), dst.fileno(), 6)


def test_a_real_failure_is_not_taken_for_a_missing_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src").write_bytes(b"12345")
    spy(monkeypatch, "copy_file_range", fail=errno.ENOSPC)
    sent = spy(monkeypatch, "sendfile")
    with (
        (tmp_path / "src").open("rb") as src,
        (tmp_path / "dst").open("wb") as dst,
        pytest.raises(OSError) as raised,
    ):
        filecopy.copy(src.fileno(), dst.fileno(), 5)
    assert raised.value.errno == errno.ENOSPC and sent == []


async def test_a_full_disk_at_the_join_is_507_and_leaves_the_upload_whole(
    local_store: LocalStorage, local_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bigupload.storage.base import StorageFull

    upload_id = await local_store.create_multipart(KEY, content_type="application/octet-stream")
    response = await put_part(local_store, local_http, upload_id, 1, LAST)
    named = [CompletedPart(1, response.headers["etag"])]
    with monkeypatch.context() as patched:
        spy(patched, "copy_file_range", fail=errno.ENOSPC)
        with pytest.raises(StorageFull):
            await local_store.complete_multipart(KEY, upload_id, named)
    assert list(local_store.tmp.iterdir()) == []
    assert await local_store.stat(KEY) is None
    await local_store.complete_multipart(KEY, upload_id, named)  # once there is room again
    assert path_for(local_store.objects, KEY).read_bytes() == LAST


# -- ETags and checksums ------------------------------------------------------------------------


def test_the_etag_is_the_md5_when_there_is_one_else_the_sha256s_first_half() -> None:
    assert etag_of(hashlib.sha256(b"abc").digest()) == '"ba7816bf8f01cfea414140de5dae2223"'
    assert etag_of(b"\0" * 32, hashlib.md5(b"abc").digest()) == (
        '"900150983cd24fb0d6963f7d28e17f72"'
    )


async def test_a_put_without_content_md5_is_tagged_by_its_sha256_and_keeps_it(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    data = os.urandom(2 * WRITE_BUFFER + 3)
    request = local_store.presign_put(
        KEY, content_type="video/mp4", size=len(data), checksum_sha256=None, expires_in=60
    )
    response = await send(local_http, request, data)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == sha_tag(data)
    stored = await local_store.stat(KEY)  # recorded on the way in, though none was signed
    assert stored is not None
    assert (stored.etag, stored.checksum_sha256) == (
        sha_tag(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert path_for(local_store.objects, KEY).read_bytes() == data


async def test_a_put_with_content_md5_is_checked_and_tagged_as_s3_tags_it(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    data = b"the bytes, with their MD5"
    request = local_store.presign_put(
        KEY, content_type="video/mp4", size=len(data), checksum_sha256=None, expires_in=60
    )
    headers = {**request.headers, "Content-MD5": b64_md5(data)}
    response = await local_http.put(request.url, content=data, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == md5_tag(data) == '"' + hashlib.md5(data).hexdigest() + '"'
    stored = await local_store.stat(KEY)
    assert stored is not None and stored.etag == md5_tag(data)
    assert stored.checksum_sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("content_md5", "code"),
    [
        (b64_md5(b"other bytes"), "bad_digest"),
        ("not base64!", "invalid_digest"),
        (base64.b64encode(b"short").decode(), "invalid_digest"),
    ],
)
async def test_a_wrong_content_md5_is_refused_and_stores_nothing(
    local_store: LocalStorage, local_http: httpx.AsyncClient, content_md5: str, code: str
) -> None:
    data = os.urandom(WRITE_BUFFER + 1)
    request = local_store.presign_put(
        KEY, content_type="video/mp4", size=len(data), checksum_sha256=None, expires_in=60
    )
    headers = {**request.headers, "Content-MD5": content_md5}
    response = await local_http.put(request.url, content=data, headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (400, code)
    assert await local_store.stat(KEY) is None
    assert list(local_store.tmp.iterdir()) == []
    # The same URL stores the bytes once the header is right (or left out).
    assert (await send(local_http, request, data)).status_code == 200


async def test_part_etags_and_the_objects_follow_s3s_rule_on_either_digest(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    upload_id = await local_store.create_multipart(KEY, content_type="application/octet-stream")
    one = await put_part(local_store, local_http, upload_id, 1, FIRST)
    two = await put_part(
        local_store, local_http, upload_id, 2, LAST, **{"Content-MD5": b64_md5(LAST)}
    )
    assert (one.headers["etag"], two.headers["etag"]) == (sha_tag(FIRST), md5_tag(LAST))
    bad = await put_part(
        local_store, local_http, upload_id, 3, LAST, **{"Content-MD5": b64_md5(FIRST)}
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "bad_digest")
    named = [CompletedPart(1, one.headers["etag"]), CompletedPart(2, two.headers["etag"])]
    done = await local_store.complete_multipart(KEY, upload_id, named)
    tags = hashlib.sha256(FIRST).digest()[:16] + hashlib.md5(LAST).digest()
    assert done.etag == f'"{hashlib.md5(tags).hexdigest()}-2"'


async def test_a_form_upload_is_tagged_by_its_sha256(local_store: LocalStorage) -> None:
    data = b"a form's file"
    post = local_store.presign_post(KEY, content_type="text/plain", max_size=100, expires_in=60)
    transport = httpx.ASGITransport(app=local_app(local_store))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post(post.url, data=post.fields, files={"file": ("f", data)})
    assert response.status_code == 204, response.text
    assert response.headers["etag"] == sha_tag(data)


async def test_a_joined_objects_sha256_is_computed_once_when_asked_for(
    local_store: LocalStorage, local_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await joined(local_store, local_http) == FIRST + LAST
    plain = await local_store.stat(KEY)
    assert plain is not None and plain.checksum_sha256 is None  # the join hashed nothing
    reads = []
    real = LocalStorage._digest

    def counted(self: LocalStorage, key: str) -> bytes:
        reads.append(key)
        return real(self, key)

    monkeypatch.setattr(LocalStorage, "_digest", counted)
    expected = hashlib.sha256(FIRST + LAST).hexdigest()
    for _ in range(3):
        stored = await local_store.stat(KEY, with_checksum=True)
        assert stored is not None and stored.checksum_sha256 == expected
    assert reads == [KEY]  # remembered in the metadata after the first
    meta = json.loads(path_for(local_store.meta, KEY, ".json").read_text())
    assert meta["sha256"] == expected


async def test_a_digest_is_not_remembered_for_an_object_stored_again_meanwhile(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    await joined(local_store, local_http)
    hashed = local_store._read_meta(KEY)
    assert hashed is not None
    identity = os.stat(path_for(local_store.objects, KEY))
    await local_store.delete(KEY)
    await joined(local_store, local_http)  # the same key, a new file
    local_store._remember_sha256(KEY, hashed, identity, "0" * 64)
    meta = json.loads(path_for(local_store.meta, KEY, ".json").read_text())
    assert meta.get("sha256") is None


# -- a client gone mid-body ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["object", "part"])
async def test_a_client_gone_mid_body_leaves_no_temporary_file(
    local_store: LocalStorage, kind: str
) -> None:
    """The ASGI disconnect after more than one write's worth of chunks: the file that was being
    written is removed, and nothing is stored."""
    size = 3 * WRITE_BUFFER
    if kind == "object":
        request = local_store.presign_put(
            KEY, content_type="video/mp4", size=size, checksum_sha256=None, expires_in=60
        )
        upload_id = None
    else:
        upload_id = await local_store.create_multipart(KEY, content_type="video/mp4")
        [request] = local_store.presign_parts(KEY, upload_id, [PartToSign(1, size)], expires_in=60)
    app = local_app(local_store)
    url = httpx.URL(request.url)
    chunk = b"x" * (64 * 1024)
    messages = [
        {"type": "http.request", "body": chunk, "more_body": True}
        for _ in range((WRITE_BUFFER * 3 // 2) // len(chunk))
    ]
    messages.append({"type": "http.disconnect"})
    seen_tmp: list[list[str]] = []

    async def receive() -> dict[str, Any]:
        if len(messages) == 1:  # the body so far went to tmp/
            seen_tmp.append(os.listdir(local_store.tmp))
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send_message(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    headers += [(b"content-length", str(size).encode()), (b"host", b"testserver")]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": url.path,
        "raw_path": url.raw_path.split(b"?")[0],
        "query_string": url.query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send_message)
    assert seen_tmp and seen_tmp[0] != []  # it was being written
    assert os.listdir(local_store.tmp) == []
    assert await local_store.stat(KEY) is None
    if upload_id is not None:
        assert await local_store.list_parts(KEY, upload_id) == []
