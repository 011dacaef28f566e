"""The README's quick start, run as a new user runs it: its shell blocks, verbatim, with bash,
against a real ``bigupload serve`` (on the local store and on LocalStack).

The blocks between the ``quick-start`` markers are run in order in one bash, with only what the
reader is told to set first (``KEY``, ``API``, ``FILE``) given in the environment. A small file
goes up in one PUT; a file just over the multipart threshold (5 MiB here, with 5 MiB parts) goes
up in two parts. Each must end ``uploaded`` (or later) with its SHA-256, and download whole.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.helpers import TIMEOUT, Server, clean_env
from tests.conftest import make_bucket
from tests.support.moto import s3_client
from tests.support.net import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- quick-start: tests/test_readme.py runs the sh blocks from here"
END = "<!-- quick-start: end -->"
BLOCK_RE = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
BANNER_KEY_RE = re.compile(r"^\s+(bu_[A-Za-z0-9_-]{43})\s*$")
MiB = 1024 * 1024
#: Landed: uploaded, and maybe already taken on by the server's own jobs.
LANDED = {"uploaded", "processing", "completed"}


def quick_start_script() -> str:
    """The quick start's shell blocks, in order, as the README shows them."""
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "the quick-start markers moved"
    section = text[text.index(START) : text.index(END)]
    blocks = BLOCK_RE.findall(section)
    assert len(blocks) >= 3, "the quick start lost its shell blocks"
    return "\n".join(blocks)


def test_the_quick_start_is_found_whole() -> None:
    script = quick_start_script()
    for step in ("/uploads", "/parts", "/complete", "/download", ".headers | to_entries[]"):
        assert step in script, step


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"the quick start needs {', '.join(missing)}: run `make test-deps`")


@pytest.fixture(params=["local", pytest.param("s3-strict", marks=pytest.mark.strict_s3)])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """``bigupload serve`` on its first start, and the admin key its banner shows."""
    env = {"BIGUPLOAD_MULTIPART_THRESHOLD": "5MiB", "BIGUPLOAD_PART_SIZE": "5MiB"}
    if request.param == "s3-strict":
        strict: Any = request.getfixturevalue("strict_s3")
        env |= {
            "BIGUPLOAD_STORAGE": "s3",
            "BIGUPLOAD_S3_ENDPOINT_URL": strict.endpoint_url,
            "BIGUPLOAD_S3_REGION": "us-east-1",
            "BIGUPLOAD_S3_BUCKET": make_bucket(s3_client(strict.endpoint_url)),
        }
    server = Server(tmp_path / "data", free_port(), **env)
    try:
        server.wait_for_line("listening on")
        server.wait_until_answering()
        keys = [m.group(1) for line in server.stderr if (m := BANNER_KEY_RE.match(line))]
        assert len(keys) == 1, "\n".join(server.stderr)
        yield server, keys[0]
    finally:
        server.stop()


def write_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def run_quick_start(workdir: Path, server: Server, key: str, name: str) -> None:
    env = clean_env(workdir / "unused", KEY=key, API=f"{server.base_url}/api/v1", FILE=name)
    done = subprocess.run(
        ["bash", "-e", "-c", quick_start_script()],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("size", "parts"),
    [(300_000, None), (6 * MiB + 1234, 2)],
    ids=["one-put", "two-parts"],
)
def test_the_quick_start_uploads_and_downloads_a_file(
    served: tuple[Server, str], tmp_path: Path, size: int, parts: int | None
) -> None:
    server, key = served
    workdir = tmp_path / "work"
    workdir.mkdir()
    name = f"file-{size}.bin"
    sha256 = write_file(workdir / name, size)

    run_quick_start(workdir, server, key, name)

    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as http:
        listed = http.get("/api/v1/files", headers={"Authorization": f"Bearer {key}"})
    [record] = [r for r in listed.json()["items"] if r["filename"] == name]
    assert record["status"] in LANDED, record
    assert (record["stored_size"], record["checksum_sha256"]) == (size, sha256)
    if parts is not None:  # joined from parts: S3's ETag of a multipart object says how many
        assert record["etag"].strip('"').endswith(f"-{parts}"), record
    downloaded = workdir / "downloads" / name
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == sha256
    assert not (workdir / "part.bin").exists()
