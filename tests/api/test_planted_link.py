"""A symbolic link planted in the local store (the store never makes one) is refused with a
clean answer, never a 500 nor the link's target: 404 ``object_not_found`` from the API (download
link, complete), 404 ``not_found`` from the store's own URLs."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from bigupload.storage.base import Storage
from bigupload.storage.local import LocalStorage
from bigupload.storage.local.tokens import GetGrant
from tests.api.helpers import send, start, uploaded
from tests.conftest import Caller

SECRET_BYTES = b"top secret, outside the store"
DATA = b"the file's own bytes"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(SECRET_BYTES)
    return tmp_path / "outside"


def object_file(store: LocalStorage, key: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return store.objects / digest[:2] / digest[2:4] / digest


def store_url(store: LocalStorage, key: str) -> str:
    """A GET URL for ``key`` signed with the store's key (the API would not make one)."""
    expires = datetime.now(UTC) + timedelta(minutes=5)
    token = store.signer.sign_get(GetGrant(key, "a.txt", "text/plain"), expires)
    return f"/store/{quote(key, safe='/')}?token={token}"


def assert_object_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "object_not_found"
    assert SECRET_BYTES not in response.content


async def test_a_link_in_place_of_an_object_is_404_everywhere(
    alice: Caller, storage: Storage, outside: Path
) -> None:
    assert isinstance(storage, LocalStorage)
    record = await uploaded(alice, DATA)
    path = object_file(storage, record["key"])
    path.unlink()
    path.symlink_to(outside / "secret.txt")

    assert_object_not_found(await alice.get(f"/api/v1/files/{record['id']}/download"))
    assert_object_not_found(
        await alice.get(f"/api/v1/files/{record['id']}/download", params={"redirect": "true"})
    )
    served = await alice.http.get(store_url(storage, record["key"]))
    assert served.status_code == 404, served.text
    assert served.json()["error"]["code"] == "not_found"
    assert SECRET_BYTES not in served.content
    deleted = await alice.delete(f"/api/v1/files/{record['id']}")  # the link goes with it
    assert deleted.status_code == 204, deleted.text
    assert not path.is_symlink()
    assert (outside / "secret.txt").read_bytes() == SECRET_BYTES


async def test_a_linked_directory_leading_out_makes_complete_404_and_keeps_the_file_pending(
    alice: Caller, storage: Storage, outside: Path
) -> None:
    assert isinstance(storage, LocalStorage)
    ticket = await start(alice, DATA)
    assert (await send(alice.http, ticket, DATA)).status_code == 200
    directory = object_file(storage, ticket["key"]).parent.parent
    shutil.copytree(directory, outside / "moved")
    shutil.rmtree(directory)
    directory.symlink_to(outside / "moved")  # the object's directory now leads out

    assert_object_not_found(await alice.post(f"/api/v1/uploads/{ticket['id']}/complete"))
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"
    served = await alice.http.get(store_url(storage, ticket["key"]))
    assert served.status_code == 404, served.text
    assert served.json()["error"]["code"] == "not_found"


async def test_a_directory_in_place_of_an_object_is_404_not_500(
    alice: Caller, storage: Storage
) -> None:
    assert isinstance(storage, LocalStorage)
    record = await uploaded(alice, DATA)
    path = object_file(storage, record["key"])
    path.unlink()
    path.mkdir()  # not a file: nothing to serve

    link = await alice.get(f"/api/v1/files/{record['id']}/download")
    assert link.status_code == 200, link.text  # signing does not read the disk
    served = await alice.http.get(link.json()["url"])
    assert served.status_code == 404, served.text
    assert served.json()["error"]["code"] == "not_found"
