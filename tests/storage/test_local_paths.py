"""No key leaves the local store's root: not by name, not through a symlink, not over HTTP.

Like starlette's "breaking out of directory" test: every hostile key is refused by
``validate_key``/``path_for``, by the store's signing methods, and by the ``/store`` endpoints
even when a correctly signed token names it (signed here with the store's own signer, since
``presign_*`` refuses to sign such a key in the first place).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from bigupload.storage.base import PresignedRequest
from bigupload.storage.keys import MAX_KEY_BYTES, InvalidKey, validate_key
from bigupload.storage.local import LocalStorage
from bigupload.storage.local.paths import path_for
from bigupload.storage.local.spool import WRITE_BUFFER
from bigupload.storage.local.tokens import GetGrant, PutGrant
from tests.storage.helpers import send, sha256

HOSTILE = {
    "parent": "..",
    "parent-first": "../secret.txt",
    "parent-deep": "../../secret.txt",
    "parent-inside": "a/../../secret.txt",
    "parent-last": "a/..",
    "dot": ".",
    "dot-segment": "a/./b",
    "absolute": "/etc/passwd",
    "root": "/",
    "backslash": "a\\b",
    "backslash-parent": "..\\..\\secret.txt",
    "nul": "a\x00b",
    "newline": "a\nb",
    "tab": "a\tb",
    "del": "a\x7fb",
    "c1-control": "a\x85b",
    "empty": "",
    "empty-segment": "a//b",
    "trailing-slash": "a/",
    "too-long": "k" * (MAX_KEY_BYTES + 1),
    "too-long-utf8": "é" * (MAX_KEY_BYTES // 2 + 1),
}
ACCEPTED = ["a", "a/b/c", "a b/é 中", "...", "..a", "a..", ".hidden", "k" * MAX_KEY_BYTES]


def escaped(key: str) -> str:
    """``key`` as a URL path with every character that could be normalized away escaped."""
    return quote(key, safe="").replace(".", "%2E")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A secret next to the store, and a directory outside it."""
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def stored_files(store: LocalStorage) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if not p.is_dir())


# -- by name ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", HOSTILE.values(), ids=HOSTILE.keys())
def test_validate_key_and_path_for_refuse_hostile_keys(local_store: LocalStorage, key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)
    with pytest.raises(InvalidKey):
        path_for(local_store.objects, key)
    with pytest.raises(InvalidKey):
        path_for(local_store.meta, key, ".json")


@pytest.mark.parametrize("key", HOSTILE.values(), ids=HOSTILE.keys())
async def test_the_store_refuses_hostile_keys_everywhere(
    local_store: LocalStorage, key: str
) -> None:
    with pytest.raises(InvalidKey):
        local_store.presign_put(key, content_type="a/b", size=1, checksum_sha256=None, expires_in=9)
    with pytest.raises(InvalidKey):
        local_store.presign_get(key, filename="a", content_type="a/b", expires_in=9)
    with pytest.raises(InvalidKey):
        await local_store.stat(key)
    with pytest.raises(InvalidKey):
        await local_store.sha256(key)
    with pytest.raises(InvalidKey):
        await local_store.delete(key)


def hashed(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.mark.parametrize("key", ACCEPTED)
def test_valid_keys_stay_under_the_root(local_store: LocalStorage, key: str) -> None:
    assert validate_key(key) == key
    path = path_for(local_store.objects, key)
    root = os.path.realpath(local_store.objects)
    digest = hashed(key)
    assert path == Path(root, digest[:2], digest[2:4], digest)
    assert os.path.commonpath([root, path]) == root and str(path) != root


def test_a_root_reached_through_a_symlink_still_works(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    digest = hashed("a/b")
    assert (
        path_for(tmp_path / "alias", "a/b") == tmp_path / "real" / digest[:2] / digest[2:4] / digest
    )


# -- through a symlink ------------------------------------------------------------------------


def plant(store: LocalStorage, key: str, target: Path, *, level: str = "dir") -> None:
    """Put a symlink where the key's directory (or file) would be."""
    digest = hashed(key)
    if level == "dir":
        (store.objects / digest[:2]).symlink_to(target)
    else:
        (store.objects / digest[:2] / digest[2:4]).mkdir(parents=True)
        (store.objects / digest[:2] / digest[2:4] / digest).symlink_to(target)


def test_a_symlinked_directory_pointing_outside_is_refused(
    local_store: LocalStorage, outside: Path
) -> None:
    plant(local_store, "link/x", outside / "elsewhere")
    assert validate_key("link/x") == "link/x"  # an innocent name...
    with pytest.raises(InvalidKey):
        path_for(local_store.objects, "link/x")  # ...that resolves outside the root


def test_a_symlinked_file_pointing_outside_is_refused(
    local_store: LocalStorage, outside: Path
) -> None:
    plant(local_store, "evil", outside / "secret.txt", level="file")
    with pytest.raises(InvalidKey):
        path_for(local_store.objects, "evil")


def test_a_symlink_that_stays_inside_the_root_is_allowed(local_store: LocalStorage) -> None:
    (local_store.objects / "real").mkdir()
    plant(local_store, "alias/x", local_store.objects / "real")
    digest = hashed("alias/x")
    assert path_for(local_store.objects, "alias/x") == (
        local_store.objects.resolve() / "real" / digest[2:4] / digest
    )


async def test_the_store_never_follows_a_symlink_out(
    local_store: LocalStorage, outside: Path
) -> None:
    plant(local_store, "evil", outside / "secret.txt", level="file")
    with pytest.raises(InvalidKey):
        local_store.presign_get("evil", filename="a", content_type="text/plain", expires_in=9)
    with pytest.raises(InvalidKey):
        await local_store.stat("evil")
    with pytest.raises(InvalidKey):
        await local_store.sha256("evil")
    await local_store.delete("evil")  # the link goes, never what it leads to
    digest = hashed("evil")
    assert not os.path.lexists(local_store.objects / digest[:2] / digest[2:4] / digest)
    assert (outside / "secret.txt").read_bytes() == b"top secret"


async def test_delete_leaves_a_directory_link_leading_out_and_what_it_leads_to(
    local_store: LocalStorage, outside: Path
) -> None:
    digest = hashed("link/x")
    (outside / "elsewhere" / digest[2:4]).mkdir()
    (outside / "elsewhere" / digest[2:4] / digest).write_bytes(b"theirs")
    plant(local_store, "link/x", outside / "elsewhere")
    await local_store.delete("link/x")
    assert (outside / "elsewhere" / digest[2:4] / digest).read_bytes() == b"theirs"


# -- over HTTP, with tokens the store would never sign -----------------------------------------


def forged_get(store: LocalStorage, key: str) -> str:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    token = store.signer.sign_get(GetGrant(key, "a.txt", "text/plain"), expires)
    return f"/store/{escaped(key)}?token={token}"


def forged_put(store: LocalStorage, key: str, size: int) -> str:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    token = store.signer.sign_put(PutGrant(key, "text/plain", size, None), expires)
    return f"/store/{escaped(key)}?token={token}"


def assert_refused_by_the_store(response: httpx.Response) -> None:
    """A 404 from the endpoint itself: the token matched the key, ``path_for`` refused it.

    (A URL normalized on the way would name another key and be a 403; an unrouted one is a
    404 with starlette's "Not Found".)
    """
    assert response.status_code == 404, response.text
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "no such object",
        "details": None,
    }


PUT_HEADERS = {"Content-Type": "text/plain", "If-None-Match": "*"}
ESCAPES = ["../../secret.txt", "a/../../../secret.txt", "/etc/passwd", "..\\..\\secret.txt"]


@pytest.mark.parametrize("key", [*ESCAPES, "a\x00b", "a//b"])
async def test_get_with_a_valid_token_for_a_hostile_key_is_404(
    local_store: LocalStorage, local_http: httpx.AsyncClient, outside: Path, key: str
) -> None:
    response = await local_http.get(forged_get(local_store, key))
    assert_refused_by_the_store(response)
    assert b"top secret" not in response.content


@pytest.mark.parametrize("key", ["../../planted.txt", "a/../../../planted.txt", "/tmp/planted"])
async def test_put_with_a_valid_token_for_a_hostile_key_is_404_and_writes_nothing(
    local_store: LocalStorage, local_http: httpx.AsyncClient, outside: Path, key: str
) -> None:
    response = await local_http.put(
        forged_put(local_store, key, 5), content=b"owned", headers=PUT_HEADERS
    )
    assert_refused_by_the_store(response)
    assert not (outside / "planted.txt").exists()
    assert not Path("/tmp/planted").exists()
    assert stored_files(local_store) == []


async def test_http_does_not_follow_a_symlink_out(
    local_store: LocalStorage, local_http: httpx.AsyncClient, outside: Path
) -> None:
    plant(local_store, "evil", outside / "secret.txt", level="file")
    plant(local_store, "link/planted.txt", outside / "elsewhere")
    response = await local_http.get(forged_get(local_store, "evil"))
    assert_refused_by_the_store(response)
    assert b"top secret" not in response.content
    response = await local_http.put(
        forged_put(local_store, "link/planted.txt", 5),
        content=b"owned",
        headers=PUT_HEADERS,
    )
    assert_refused_by_the_store(response)
    assert list((outside / "elsewhere").iterdir()) == []
    assert (outside / "secret.txt").read_bytes() == b"top secret"


# -- refused uploads leave nothing behind ------------------------------------------------------

CHUNK = 256 * 1024
SIGNED = 2 * WRITE_BUFFER  # the limit is crossed after two full buffers were written to tmp/


def signed(store: LocalStorage, checksum: bytes | None = None) -> PresignedRequest:
    return store.presign_put(
        "k",
        content_type="application/octet-stream",
        size=SIGNED,
        checksum_sha256=checksum,
        expires_in=60,
    )


async def test_a_put_refused_half_way_leaves_no_file(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    seen_in_tmp: list[list[Path]] = []

    async def too_long() -> AsyncIterator[bytes]:
        for _ in range(SIGNED // CHUNK):
            yield b"x" * CHUNK
        seen_in_tmp.append(list(local_store.tmp.iterdir()))  # written so far, not yet refused
        yield b"x" * CHUNK
        yield b"x" * CHUNK

    request = signed(local_store)
    response = await local_http.put(request.url, content=too_long(), headers=request.headers)
    assert "content-length" not in response.request.headers  # streamed: refused mid-body
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "size_mismatch"
    assert len(seen_in_tmp) == 1 and len(seen_in_tmp[0]) == 1  # the upload was under way
    assert stored_files(local_store) == []
    assert await local_store.stat("k") is None


@pytest.mark.parametrize(
    ("body", "checksum", "code"),
    [
        (b"x" * (SIGNED - 1), None, "size_mismatch"),
        (b"y" * SIGNED, sha256(b"x" * SIGNED), "checksum_mismatch"),
    ],
    ids=["short", "wrong-digest"],
)
async def test_a_put_refused_at_the_end_leaves_no_file(
    local_store: LocalStorage,
    local_http: httpx.AsyncClient,
    body: bytes,
    checksum: bytes | None,
    code: str,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), CHUNK):
            yield body[start : start + CHUNK]

    request = signed(local_store, checksum)
    response = await local_http.put(request.url, content=chunks(), headers=request.headers)
    assert "content-length" not in response.request.headers
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert stored_files(local_store) == []


async def test_of_two_uploads_to_one_key_the_first_to_finish_wins(
    local_store: LocalStorage, local_http: httpx.AsyncClient
) -> None:
    """The slow upload passed the "already stored?" check before the fast one finished."""
    fast_body = b"f" * SIGNED
    fast, slow = signed(local_store), signed(local_store)
    answers: list[int] = []

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"s" * CHUNK
        answers.append((await send(local_http, fast, fast_body)).status_code)
        for _ in range(SIGNED // CHUNK - 1):
            yield b"s" * CHUNK

    response = await local_http.put(slow.url, content=slow_body(), headers=slow.headers)
    assert answers == [200]
    assert response.status_code == 412, response.text
    assert response.json()["error"]["code"] == "object_exists"
    assert await local_store.sha256("k") == hashlib.sha256(fast_body).digest()
    assert list(local_store.tmp.iterdir()) == []
    assert stored_files(local_store) == sorted(
        [path_for(local_store.meta, "k", ".json"), path_for(local_store.objects, "k")]
    )
