"""Browser form uploads (``Storage.presign_post``, S3's POST policy) on every adapter.

The same form is posted to the local store (bigupload's ``POST /store``), to moto and to
LocalStack. Refusals run where the store enforces the policy (``local`` and ``s3-strict``; moto
checks neither the policy's signature, nor its conditions, nor its expiry). Then the local
store's own rules: the fields come first and the file last, the file is streamed to disk and
refused past its largest size, and a refused, truncated or abandoned upload leaves nothing.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from bigupload import clock
from bigupload.disconnects import CLIENT_CLOSED_REQUEST
from bigupload.storage.base import PresignedPost, Storage
from bigupload.storage.local import LocalStorage
from bigupload.storage.local.formdata import FormReader, MalformedForm, boundary_of
from bigupload.storage.s3 import S3Storage
from tests.storage.conftest import ENFORCING
from tests.storage.helpers import error_code, local_app, sha256

DATA = b"0123456789abcdef" * 640 + b"tail"  # 10,244 bytes
CONTENT_TYPE = "video/mp4"
KeyMaker = Callable[..., str]


def form_body(
    fields: Sequence[tuple[str, str]],
    file: bytes | None,
    *,
    boundary: str = "----bigupload-test-boundary",
    after: Sequence[tuple[str, str]] = (),
    file_type: str = "application/octet-stream",
) -> tuple[bytes, dict[str, str]]:
    """A ``multipart/form-data`` body, as a browser builds it: ``fields``, then ``file`` (if
    any), then ``after``; and its Content-Type header."""
    out = bytearray()

    def field(name: str, value: str) -> None:
        out.extend(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        )
        out.extend(value.encode() + b"\r\n")

    for name, value in fields:
        field(name, value)
    if file is not None:
        out.extend(
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="file"; filename="clip.mp4"\r\nContent-Type: {file_type}\r\n\r\n'.encode()
        )
        out.extend(file + b"\r\n")
    for name, value in after:
        field(name, value)
    out.extend(f"--{boundary}--\r\n".encode())
    return bytes(out), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def submit(
    http: httpx.AsyncClient,
    post: PresignedPost,
    data: bytes | None,
    *,
    fields: dict[str, str] | None = None,
) -> httpx.Response:
    """Post the form as signed (or with ``fields`` instead of the signed ones)."""
    body, headers = form_body(list((post.fields if fields is None else fields).items()), data)
    return await http.post(post.url, content=body, headers=headers)


def sign(store: Storage, key: str, max_size: int = len(DATA), **kw: Any) -> PresignedPost:
    kw.setdefault("content_type", CONTENT_TYPE)
    kw.setdefault("expires_in", 600)
    return store.presign_post(key, max_size=max_size, **kw)


# -- storing, on every adapter ------------------------------------------------------------------


async def test_a_form_post_stores_a_file_of_exactly_the_largest_size(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    """Answered 204 with the object's ``ETag`` and ``Location`` (its URL, the key encoded as
    S3 encodes it), which browser uploaders read. moto answers 204 with neither header."""
    key = new_key("clip name ü.mp4")
    response = await submit(http_for_store, sign(store, key, max_size=len(DATA)), DATA)

    assert response.status_code == 204, response.text
    stored = await store.stat(key)
    assert stored is not None
    assert (stored.size, stored.content_type) == (len(DATA), CONTENT_TYPE)
    assert await store.read_range(key, 0, len(DATA) + 1) == DATA
    if adapter == "s3-moto":
        assert "etag" not in response.headers and "location" not in response.headers
    else:
        assert response.headers["etag"] == stored.etag
        location = response.headers["location"]
        assert location.endswith(f"/{quote(key, safe='/')}") and "%C3%BC" in location


async def test_a_form_post_stores_an_empty_file(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    response = await submit(http_for_store, sign(store, key, max_size=0), b"")
    assert response.status_code == 204, response.text
    stored = await store.stat(key)
    assert stored is not None
    assert (stored.size, stored.content_type) == (0, CONTENT_TYPE)


async def test_a_form_post_stores_less_than_the_largest_size(
    store: Storage, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    response = await submit(http_for_store, sign(store, key, max_size=10 * len(DATA)), DATA)
    assert response.status_code == 204, response.text
    assert await store.sha256(key) == sha256(DATA)


async def test_the_form_says_when_it_expires(
    store: Storage, new_key: KeyMaker, set_clock: Callable[[datetime], None]
) -> None:
    now = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
    set_clock(now)
    post = sign(store, new_key(), expires_in=900)
    assert post.expires_at == now + timedelta(seconds=900)


def test_the_local_form_carries_the_key_the_type_and_a_token_in_that_order(
    local_store: LocalStorage,
) -> None:
    post = local_store.presign_post(
        "uploads/a/2026/11/b", content_type="image/png", max_size=99, expires_in=60
    )
    assert post.url == "http://testserver/store"
    assert list(post.fields) == ["key", "Content-Type", "token"]
    assert post.fields["key"] == "uploads/a/2026/11/b"
    assert post.fields["Content-Type"] == "image/png"
    grant = local_store.signer.verify_post(post.fields["token"], "uploads/a/2026/11/b")
    assert (grant.content_type, grant.max_size) == ("image/png", 99)


def test_the_s3_policy_binds_bucket_key_type_and_length_range(moto_store: S3Storage) -> None:
    key = "uploads/a/2026/11/b c"
    post = moto_store.presign_post(key, content_type="image/png", max_size=99, expires_in=60)
    assert post.url.endswith(f"/{moto_store.bucket}")
    assert post.fields["Content-Type"] == "image/png"
    assert post.fields["key"] == key
    assert list(post.fields)[:2] == ["Content-Type", "key"]
    policy = json.loads(base64.b64decode(post.fields["policy"]))
    conditions = policy["conditions"]
    assert {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", 0, 99] in conditions
    assert {"bucket": moto_store.bucket} in conditions
    assert {"key": key} in conditions


@pytest.mark.parametrize("max_size", [-1, 1.5, "9"])
def test_a_largest_size_that_is_not_a_count_of_bytes_is_refused(
    store: Storage, max_size: Any
) -> None:
    with pytest.raises(ValueError):
        store.presign_post(
            "uploads/a/2026/11/b", content_type="a/b", max_size=max_size, expires_in=60
        )


# -- refusals where the policy is enforced ----------------------------------------------------

#: (status, code) per adapter and case: bigupload's JSON code, or S3's XML <Code>.
REFUSED = {
    "local": {
        "too_large": (400, "entity_too_large"),
        "content_type": (403, "content_type_mismatch"),
        "tampered": (403, "url_invalid"),
        "expired": (403, "url_expired"),
        "other_key": (403, "url_invalid"),
    },
    "s3-strict": {
        "too_large": (400, "EntityTooLarge"),
        "content_type": (403, "AccessDenied"),
        "expired": (403, "AccessDenied"),
        "other_key": (403, "AccessDenied"),
    },
}


async def assert_refused(
    store: Storage, adapter: str, response: httpx.Response, case: str, *keys: str
) -> None:
    assert (response.status_code, error_code(store, response)) == REFUSED[adapter][case], (
        response.text
    )
    for key in keys:
        assert await store.stat(key) is None


@ENFORCING
async def test_a_file_one_byte_over_the_largest_size_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    post = sign(store, key, max_size=len(DATA) - 1)
    response = await submit(http_for_store, post, DATA)
    await assert_refused(store, adapter, response, "too_large", key)
    # the same form stores a file of the largest size
    assert (await submit(http_for_store, post, DATA[:-1])).status_code == 204


@ENFORCING
async def test_another_content_type_field_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    post = sign(store, key)
    fields = {**post.fields, "Content-Type": "text/html"}
    response = await submit(http_for_store, post, DATA, fields=fields)
    await assert_refused(store, adapter, response, "content_type", key)


@ENFORCING
async def test_a_tampered_signature_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    """LocalStack does NOT check a POST policy's signature (AWS answers 403
    SignatureDoesNotMatch): it stores the file, as asserted here; only the local store's
    refusal is tested for real. It does enforce the policy's conditions and expiry (below)."""
    key = new_key()
    post = sign(store, key)
    name = "token" if isinstance(store, LocalStorage) else "x-amz-signature"
    value = post.fields[name]
    # the local token's signature is its last segment: change its first character
    at = value.rindex(".") + 1 if isinstance(store, LocalStorage) else 0
    forged = value[:at] + ("A" if value[at] != "A" else "B") + value[at + 1 :]
    response = await submit(http_for_store, post, DATA, fields={**post.fields, name: forged})
    if adapter == "s3-strict":
        assert response.status_code == 204, response.text
        return
    await assert_refused(store, adapter, response, "tampered", key)
    assert (await submit(http_for_store, post, DATA)).status_code == 204


@ENFORCING
async def test_an_expired_form_is_refused(
    store: Storage,
    adapter: str,
    http_for_store: httpx.AsyncClient,
    new_key: KeyMaker,
    set_clock: Callable[[datetime], None],
) -> None:
    key = new_key()
    if isinstance(store, LocalStorage):
        set_clock(datetime.now(UTC) - timedelta(hours=1))  # signed an hour ago, for a minute
        post = sign(store, key, expires_in=60)
        clock.set_clock(None)
    else:
        post = sign(store, key, expires_in=-60)  # boto3 dates the policy's expiry a minute ago
    response = await submit(http_for_store, post, DATA)
    await assert_refused(store, adapter, response, "expired", key)


@ENFORCING
async def test_a_form_for_another_key_is_refused(
    store: Storage, adapter: str, http_for_store: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key, other = new_key(), new_key()
    post = sign(store, key)
    response = await submit(http_for_store, post, DATA, fields={**post.fields, "key": other})
    await assert_refused(store, adapter, response, "other_key", key, other)


# -- the local store's form handling ----------------------------------------------------------


def leftovers(store: LocalStorage) -> list[str]:
    """Files in the store's temporary and object folders."""
    return [str(p) for d in (store.tmp, store.objects) for p in d.rglob("*") if p.is_file()]


async def test_a_form_without_its_file_is_refused(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    response = await submit(local_http, sign(local_store, key), None)
    assert (response.status_code, error_code(local_store, response)) == (400, "file_missing")
    assert leftovers(local_store) == []


async def test_a_file_before_the_fields_is_refused_as_s3_refuses_it(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    """S3 reads no field after the file: here the key and token come too late."""
    post = sign(local_store, new_key())
    body, headers = form_body([], DATA, after=list(post.fields.items()))
    response = await local_http.post(post.url, content=body, headers=headers)
    assert (response.status_code, error_code(local_store, response)) == (400, "form_field_missing")
    assert response.json()["error"]["details"] == {"field": "key"}
    assert leftovers(local_store) == []


async def test_a_form_without_a_token_is_refused(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    post = sign(local_store, new_key())
    fields = {k: v for k, v in post.fields.items() if k != "token"}
    response = await submit(local_http, post, DATA, fields=fields)
    assert (response.status_code, error_code(local_store, response)) == (403, "url_invalid")
    assert leftovers(local_store) == []


async def test_a_put_token_is_not_a_form_token(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    put = local_store.presign_put(
        key, content_type=CONTENT_TYPE, size=len(DATA), checksum_sha256=None, expires_in=60
    )
    post = sign(local_store, key)
    token = put.url.rsplit("token=", 1)[1]
    response = await submit(local_http, post, DATA, fields={**post.fields, "token": token})
    assert (response.status_code, error_code(local_store, response)) == (403, "url_invalid")


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/mixed; boundary=x",
    ],
)
async def test_a_body_that_is_not_a_form_is_refused(
    local_store: LocalStorage, local_http: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await local_http.post("/store", content=b"key=a&file=b", headers=headers)
    assert (response.status_code, error_code(local_store, response)) == (400, "malformed_form")


async def test_fields_past_the_budget_are_refused(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    post = sign(local_store, new_key())
    fields = {**post.fields, "x-amz-meta-note": "n" * 20 * 1024}
    response = await submit(local_http, post, DATA, fields=fields)
    assert (response.status_code, error_code(local_store, response)) == (
        400,
        "form_fields_too_large",
    )


async def test_a_body_that_ends_inside_the_file_stores_nothing(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    key = new_key()
    post = sign(local_store, key)
    body, headers = form_body(list(post.fields.items()), DATA)
    truncated = body[: body.index(DATA) + 5000]
    response = await local_http.post(post.url, content=truncated, headers=headers)
    assert (response.status_code, error_code(local_store, response)) == (400, "malformed_form")
    assert await local_store.stat(key) is None
    assert leftovers(local_store) == []


async def test_a_client_that_goes_away_mid_file_leaves_nothing(
    local_store: LocalStorage, new_key: KeyMaker
) -> None:
    """Driven at the ASGI level: the body's first half, then the client disconnects."""
    key = new_key()
    post = sign(local_store, key, max_size=4 * 1024 * 1024)
    big = b"x" * (3 * 1024 * 1024)  # past the store's write buffer: a temp file is on disk
    body, headers = form_body(list(post.fields.items()), big)
    half = len(body) // 2
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": body[:half], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []
    seen_tmp: list[list[str]] = []

    async def receive() -> dict[str, Any]:
        if len(messages) == 1:  # about to disconnect: the upload is in flight
            seen_tmp.append([p.name for p in local_store.tmp.iterdir()])
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/store",
        "raw_path": b"/store",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", headers["Content-Type"].encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    app = local_app(local_store)
    await app(scope, receive, send)  # a client that left: 499, once the temp file is gone
    assert sent[0]["status"] == CLIENT_CLOSED_REQUEST
    assert [len(names) for names in seen_tmp] == [1]  # the file being written
    assert await local_store.stat(key) is None
    assert leftovers(local_store) == []
    assert not any(m["type"] == "http.response.start" and m["status"] < 300 for m in sent)


async def test_a_form_never_replaces_a_stored_object(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    """Unlike S3, where a form may be posted again until it expires and replace the object."""
    key = new_key()
    post = sign(local_store, key)
    assert (await submit(local_http, post, DATA)).status_code == 204
    response = await submit(local_http, post, b"other")
    assert (response.status_code, error_code(local_store, response)) == (412, "object_exists")
    assert await local_store.read_range(key, 0, len(DATA)) == DATA
    assert [p for p in local_store.tmp.iterdir()] == []


@pytest.mark.parametrize(
    ("status", "answer"), [(None, 204), ("200", 200), ("201", 201), ("303", 204)]
)
async def test_success_action_status_is_honoured_as_s3_honours_it(
    local_store: LocalStorage,
    local_http: httpx.AsyncClient,
    new_key: KeyMaker,
    status: str | None,
    answer: int,
) -> None:
    key = new_key("a&b.mp4")
    post = sign(local_store, key)
    extra = {"success_action_status": status} if status else {}
    # S3's other fields (and any field after the file) are ignored
    fields = {**post.fields, **extra, "acl": "private", "x-amz-meta-note": "hi"}
    body, headers = form_body(list(fields.items()), DATA, after=[("key", "uploads/else")])
    response = await local_http.post(post.url, content=body, headers=headers)
    assert response.status_code == answer, response.text
    stored = await local_store.stat(key)
    assert stored is not None and stored.size == len(DATA)
    location = f"http://testserver/store/{quote(key, safe='/')}"
    assert response.headers["location"] == location
    assert response.headers["etag"] == stored.etag
    if answer == 201:
        assert response.headers["content-type"] == "application/xml"
        assert f"<Key>{key.replace('&', '&amp;')}</Key>" in response.text
        assert f"<ETag>{stored.etag}</ETag>" in response.text
    else:
        assert response.content == b""


async def test_a_stored_form_upload_is_announced_as_s3_announces_it(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    received: list[Any] = []

    async def sink(notification: Any) -> None:
        received.append(notification)

    local_store.event_sink = sink
    key = new_key()
    assert (await submit(local_http, sign(local_store, key), DATA)).status_code == 204
    await local_store.drain_events()
    [record] = [r for n in received for r in n["Records"]]
    assert record["eventName"] == "ObjectCreated:Post"
    assert record["s3"]["object"]["size"] == len(DATA)


async def test_a_refused_form_is_not_announced(
    local_store: LocalStorage, local_http: httpx.AsyncClient, new_key: KeyMaker
) -> None:
    received: list[Any] = []

    async def sink(notification: Any) -> None:
        received.append(notification)

    local_store.event_sink = sink
    post = sign(local_store, new_key(), max_size=10)
    response = await submit(local_http, post, DATA)
    assert (response.status_code, error_code(local_store, response)) == (400, "entity_too_large")
    await local_store.drain_events()
    assert received == []


# -- the streaming form reader ----------------------------------------------------------------


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def read_form(body: bytes, boundary: str, chunk: int) -> list[tuple[str, bytes, int]]:
    """(name, bytes, the largest piece the reader handed on) of every part."""
    reader = FormReader(chunks_of(body, chunk), boundary.encode())
    parts = []
    while (part := await reader.next_part()) is not None:
        pieces = [piece async for piece in reader.stream()]
        parts.append((part.name, b"".join(pieces), max((len(p) for p in pieces), default=0)))
    return parts


@pytest.mark.parametrize("chunk", [1, 7, 46, 4096, 1 << 20])
async def test_the_reader_finds_every_part_however_the_body_is_cut(chunk: int) -> None:
    boundary = "b0undary"
    # the file holds near-boundaries: CRLF--b0undar, --b0undary without CRLF
    data = b"\r\n--b0undar\r\n--b0undarX" + DATA + b"--b0undary" + b"\r\n"
    body, _ = form_body([("key", "k"), ("empty", "")], data, boundary=boundary)
    body = b"a preamble\r\n" + body
    parts = await read_form(body, boundary, chunk)
    assert [(name, value) for name, value, _ in parts] == [
        ("key", b"k"),
        ("empty", b""),
        ("file", data),
    ]
    # the file was handed on piece by piece, never much more than one chunk at a time
    largest = max(piece for _, _, piece in parts)
    assert largest <= chunk + len(b"\r\n--" + boundary.encode())


async def test_the_reader_streams_a_large_file_in_pieces() -> None:
    data = bytes(range(256)) * 40_000  # 10 MB
    body, headers = form_body([("key", "k")], data)
    boundary = boundary_of(headers["Content-Type"]).decode()
    [_, (name, value, largest)] = await read_form(body, boundary, 65_536)
    assert (name, value == data) == ("file", True)
    assert largest <= 65_536 + 64


@pytest.mark.parametrize(
    "body",
    [
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue',  # no end
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--b',  # cut after a delimiter
        b"--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--",  # no disposition
        b'--b\r\nContent-Disposition: attachment; name="a"\r\n\r\nv\r\n--b--',
        b"--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--",  # no name
        b"--b\r\nnot a header\r\n\r\nv\r\n--b--",
        b"no boundary at all",
        b"",
    ],
)
async def test_the_reader_refuses_a_malformed_body(body: bytes) -> None:
    reader = FormReader(chunks_of(body, 3), b"b")
    with pytest.raises(MalformedForm):
        while await reader.next_part() is not None:
            async for _ in reader.stream():
                pass


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + "x" * 71,
        "text/plain; boundary=x",
    ],
)
def test_a_content_type_without_a_usable_boundary_is_refused(content_type: str) -> None:
    with pytest.raises(MalformedForm):
        boundary_of(content_type)


def test_a_quoted_boundary_is_read() -> None:
    boundary = uuid.uuid4().hex
    assert boundary_of(f'Multipart/Form-Data; boundary="{boundary}"') == boundary.encode()
