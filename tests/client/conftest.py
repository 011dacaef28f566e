"""Fixtures of the client tests: a proxied live service, and files of random bytes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Harness, MakeFile, proxied_service


@pytest.fixture
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with proxied_service(request, tmp_path) as harness:
        yield harness


@pytest.fixture
def make_file(tmp_path: Path) -> MakeFile:
    """``make_file(size, name=...)``: a file of random bytes, and its SHA-256."""

    def make(size: int, name: str = "payload.bin") -> tuple[Path, str]:
        path = tmp_path / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        return path, hashlib.sha256(data).hexdigest()

    return make
