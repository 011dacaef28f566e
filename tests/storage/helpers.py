"""What the storage tests share: reaching a store over HTTP, reading its refusals, forging URLs."""

from __future__ import annotations

import contextlib
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from bigupload.config import Settings
from bigupload.errors import install_error_handlers
from bigupload.storage.base import PresignedRequest, Storage
from bigupload.storage.local import LocalStorage
from bigupload.storage.local.endpoints import router

TEST_BASE_URL = "http://testserver"


def local_app(store: LocalStorage, settings: Settings | None = None) -> FastAPI:
    """Just the local store's endpoints, as the service mounts them (with ``settings``, when the
    test needs some: the store reads ``store_cors_origins``)."""
    app = FastAPI()
    app.include_router(router)
    app.state.storage = store
    if settings is not None:
        app.state.settings = settings
    install_error_handlers(app)
    return app


@contextlib.asynccontextmanager
async def http_for(store: Storage) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``store``'s URLs: in-process for ``local``, real HTTP for S3."""
    if isinstance(store, LocalStorage):
        transport = httpx.ASGITransport(app=local_app(store))
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as client:
            yield client
    else:
        async with httpx.AsyncClient() as client:
            yield client


async def send(
    http: httpx.AsyncClient, request: PresignedRequest, body: bytes = b""
) -> httpx.Response:
    """Make ``request`` exactly as signed: its method, URL and headers."""
    return await http.request(request.method, request.url, content=body, headers=request.headers)


def error_code(store: Storage, response: httpx.Response) -> str | None:
    """The stable code of a refusal: bigupload's JSON ``error.code``, or S3's XML ``<Code>``."""
    if isinstance(store, LocalStorage):
        assert response.headers["content-type"] == "application/json", response.text
        code: str = response.json()["error"]["code"]
        return code
    return ET.fromstring(response.content).findtext(".//Code")  # moto nests it in <Errors>


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _swap(ch: str, alphabet: str) -> str:
    return alphabet[0] if ch != alphabet[0] else alphabet[1]


def tampered(store: Storage, url: str) -> str:
    """``url`` with exactly one character of its signature changed.

    The local store's signature is the JWT's last segment (base64url): its *first* character is
    changed, since the last one carries padding bits that may not change the decoded bytes. S3's
    is the hex ``X-Amz-Signature``.
    """
    if isinstance(store, LocalStorage):
        at = url.rindex(".") + 1  # the JWT is the URL's last parameter, its signature last
        alphabet = "AB"
    else:
        at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        alphabet = "01"
    forged = url[:at] + _swap(url[at], alphabet) + url[at + 1 :]
    assert forged != url and len(forged) == len(url)
    return forged
