"""Part bodies by ``sendfile`` to plain-HTTP store URLs, by httpx to TLS (or proxied) ones:
the same bytes, retries and answers either way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bigupload.client import Client
from bigupload.client.direct import DirectPut
from tests.support.faults import FaultPlan
from tests.support.harness import PART, Harness, MakeFile, proxied_service, sha256_of
from tests.support.tls import loopback_certificate

MiB = 1024 * 1024


@pytest.fixture
def tls_harness(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    context, cert = loopback_certificate(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with proxied_service(request, tmp_path, tls=context) as harness:
        yield harness


def count_direct(client: Client) -> list[str]:
    """The URLs the client's ``sendfile`` path sends to, as it sends them."""
    urls: list[str] = []
    put = client.direct.put

    def counting(url: str, *args: Any, **kw: Any) -> Any:
        urls.append(url)
        return put(url, *args, **kw)

    client.direct.put = counting  # type: ignore[method-assign]
    return urls


@pytest.mark.parametrize("size", [3 * MiB + 7, 4 * PART + 12345], ids=["one PUT", "parts"])
def test_plain_http_bodies_go_by_sendfile(
    harness: Harness, make_file: MakeFile, tmp_path: Path, size: int
) -> None:
    path, digest = make_file(size)
    with harness.client(concurrency=3) as client:
        direct = count_direct(client)
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert remote.stored_size == size
    assert sha256_of(out) == digest
    puts = [r for r in harness.proxy.snapshot() if r.method == "PUT"]
    assert len(direct) == len(puts) == (1 if size < PART else 5)
    assert all(r.status == 200 for r in puts)


@pytest.mark.parametrize("size", [3 * MiB + 7, 4 * PART + 12345], ids=["one PUT", "parts"])
def test_tls_bodies_go_through_httpx(
    tls_harness: Harness, make_file: MakeFile, tmp_path: Path, size: int
) -> None:
    path, digest = make_file(size)
    assert tls_harness.url.startswith("https://")
    with tls_harness.client(concurrency=3) as client:
        direct = count_direct(client)
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert remote.stored_size == size
    assert sha256_of(out) == digest
    puts = [r for r in tls_harness.proxy.snapshot() if r.method == "PUT"]
    assert direct == []
    assert len(puts) == (1 if size < PART else 5)
    assert all(r.status == 200 for r in puts)


@pytest.mark.parametrize("tls", [False, True], ids=["sendfile", "httpx over TLS"])
def test_dropped_parts_are_sent_again_on_both_paths(
    request: pytest.FixtureRequest, make_file: MakeFile, tmp_path: Path, tls: bool
) -> None:
    harness = request.getfixturevalue("tls_harness" if tls else "harness")
    harness.proxy.plan = FaultPlan(seed=3, share=0.5, kinds=("drop", "drop_after"))
    path, digest = make_file(6 * PART - 1000)
    with harness.client(concurrency=3) as client:
        remote = client.upload(path)
        out = client.download(remote.id, tmp_path / "out.bin")
    assert sha256_of(out) == digest
    injected = Counter(r.fault for r in harness.proxy.faults())
    assert injected["drop"] >= 1 and injected["drop_after"] >= 1, injected


def test_sendfile_only_for_plain_http_without_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    direct = DirectPut(timeout=5, connect_timeout=5, user_agent="test")
    assert direct.usable("http://127.0.0.1:9000/store/abc?token=x")
    assert not direct.usable("https://127.0.0.1:9000/store/abc?token=x")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    assert not direct.usable("http://store.example.com/store/abc")
    monkeypatch.setenv("NO_PROXY", "store.example.com")
    assert direct.usable("http://store.example.com/store/abc")
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.internal:1080")
    assert not direct.usable("http://store.example.com/store/abc")
    direct.close()
    monkeypatch.delenv("ALL_PROXY")
    assert not direct.usable("http://127.0.0.1:9000/store/abc"), "closed"
