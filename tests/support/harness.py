"""A real bigupload service for client tests: local store, multipart above 8 MiB in 5 MiB
parts, reached through a fault-injection proxy (which the store's URLs go through too)."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bigupload.client import Client, RetryPolicy
from tests.support.faults import FaultProxy
from tests.support.net import free_port
from tests.support.service import Service, live_service

MiB = 1024 * 1024
PART = 5 * MiB
THRESHOLD = 8 * MiB

#: ``make_file(size, name=...)``: a file of random bytes, and its SHA-256.
MakeFile = Callable[..., tuple[Path, str]]


@dataclass
class Harness:
    service: Service
    proxy: FaultProxy
    cache_dir: Path

    @property
    def url(self) -> str:
        """Where clients go: the proxy."""
        return self.proxy.url

    def client(self, **kw: Any) -> Client:
        kw.setdefault("concurrency", 3)
        kw.setdefault("cache_dir", self.cache_dir)
        kw.setdefault("retries", RetryPolicy(retries=6, backoff=0.01, max_backoff=0.05))
        return Client(self.url, self.service.api_key, **kw)

    def api(self) -> httpx.Client:
        """Plain HTTP straight to the service, to look behind the client's back."""
        return httpx.Client(base_url=self.service.url, headers=self.service.auth, timeout=30)

    def states(self) -> list[Path]:
        return sorted(self.cache_dir.glob("*.json")) if self.cache_dir.is_dir() else []


@contextmanager
def proxied_service(
    request: pytest.FixtureRequest, tmp_path: Path, tls: ssl.SSLContext | None = None
) -> Iterator[Harness]:
    """With ``tls``, clients reach the proxy (the API and the store's URLs) over HTTPS."""
    proxy_port = free_port()
    scheme = "https" if tls is not None else "http"
    with (
        live_service(
            request,
            tmp_path,
            "local",
            public_url=f"{scheme}://127.0.0.1:{proxy_port}",
            multipart_threshold=THRESHOLD,
            part_size=PART,
        ) as service,
        FaultProxy(service.url, proxy_port, tls=tls) as proxy,
    ):
        yield Harness(service, proxy, tmp_path / "cache")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()
