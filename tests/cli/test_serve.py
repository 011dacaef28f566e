"""``bigupload serve``, run as a real process on a free port, spoken to over real HTTP."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.helpers import (
    INVALID_CONFIGURATIONS,
    Result,
    Server,
    bigupload,
    run_many,
)
from tests.support.net import free_port

KEY_RE = re.compile(r"bu_[A-Za-z0-9_-]{43}")
BANNER_KEY_RE = re.compile(r"^\s+(bu_[A-Za-z0-9_-]{43})\s*$")


@pytest.fixture
def start_server() -> Iterator[type[Server]]:
    """Start servers with ``start_server(data_dir, port)``; every one is stopped at the end."""
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, data_dir: Path, port: int) -> None:
            super().__init__(data_dir, port)
            started.append(self)

    yield Tracked
    for server in started:
        server.stop()


def one_banner_key(lines: list[str]) -> str:
    keys = [m.group(1) for line in lines if (m := BANNER_KEY_RE.match(line))]
    assert len(keys) == 1, "\n".join(lines)
    return keys[0]


def upload_over_http(http: httpx.Client, key: str) -> tuple[str, str]:
    """Start, send and confirm a small upload; answer the signed PUT URL and its request id."""
    auth = {"Authorization": f"Bearer {key}"}
    data = b"bigupload over real HTTP\n" * 100
    ticket = http.post(
        "/api/v1/uploads",
        json={
            "filename": "notes.txt",
            "content_type": "text/plain",
            "size": len(data),
            "checksum_sha256": hashlib.sha256(data).hexdigest(),
        },
        headers=auth,
    )
    assert ticket.status_code == 201, ticket.text
    body = ticket.json()
    assert body["url"].startswith(str(http.base_url).rstrip("/") + "/store/")
    assert "token=" in body["url"]
    put = http.request(body["method"], body["url"], content=data, headers=body["headers"])
    assert put.status_code == 200, put.text
    done = http.post(f"/api/v1/uploads/{body['id']}/complete", headers=auth)
    assert done.status_code == 200, done.text
    # The server's own jobs may already be processing it (its store reported the PUT).
    assert done.json()["status"] in ("uploaded", "processing", "completed")
    return body["url"], put.headers["x-request-id"]


# -- a real start --------------------------------------------------------------------------------


def test_serve_first_start_prints_an_admin_key_that_works(
    tmp_path: Path, start_server: type[Server]
) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, free_port())
    listening = server.wait_for_line("listening on")
    assert f"127.0.0.1:{server.port}" in listening
    admin_key = one_banner_key(server.stderr)
    server.wait_until_answering()

    with httpx.Client(base_url=server.base_url, timeout=10, trust_env=False) as http:
        health = http.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        files = http.get("/api/v1/files", headers={"Authorization": f"Bearer {admin_key}"})
        assert files.status_code == 200, files.text
        files_id = files.headers["x-request-id"]
        assert http.get("/api/v1/files").status_code == 401
        assert http.get("/docs").status_code == 200
        spec = http.get("/openapi.json")
        assert spec.status_code == 200
        assert "/api/v1/files" in spec.json()["paths"]
        signed_url, put_id = upload_over_http(http, admin_key)

    server.stop()
    stderr = server.stderr
    text = "\n".join(stderr)
    assert "Traceback" not in text
    # The key is shown once (the banner), and only on standard error.
    assert text.count(admin_key) == 1
    assert not any(admin_key in line for line in server.stdout)
    # One access line per request, with its id; the signed URL's token is never logged.
    files_lines = [line for line in stderr if files_id in line]
    assert len(files_lines) == 1
    assert "GET /api/v1/files 200" in files_lines[0]
    put_lines = [line for line in stderr if put_id in line]
    assert len(put_lines) == 1
    assert re.search(r"PUT /store/\S+ 200", put_lines[0]), put_lines[0]
    token = signed_url.split("token=", 1)[1]
    assert token not in text
    assert "token=" not in text
    assert (data_dir / "bigupload.db").is_file()


def test_serve_second_start_prints_no_new_key(tmp_path: Path, start_server: type[Server]) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir, free_port())
    first.wait_for_line("listening on")
    admin_key = one_banner_key(first.stderr)
    first.stop()

    second = start_server(data_dir, free_port())
    second.wait_for_line("listening on")
    second.wait_until_answering()
    with httpx.Client(base_url=second.base_url, timeout=10, trust_env=False) as http:
        again = http.get("/api/v1/files", headers={"Authorization": f"Bearer {admin_key}"})
        assert again.status_code == 200, again.text
    second.stop()
    output = "\n".join(second.stderr + second.stdout)
    assert not KEY_RE.search(output), output
    assert "API key" not in output


# -- failures at start ------------------------------------------------------------------------


def test_serve_on_a_database_it_cannot_open_fails_in_one_line(tmp_path: Path) -> None:
    result = bigupload(
        tmp_path / "data",
        "serve",
        "--port",
        str(free_port()),
        BIGUPLOAD_DATABASE_URL="postgresql+asyncpg://u:hunter2@127.0.0.1:1/x",
    )
    assert result.code == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bigupload: cannot use the database: ")
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert not KEY_RE.search(result.stderr + result.stdout)


@pytest.fixture(scope="module")
def invalid_config_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Every invalid configuration tried at once, each in its own process and data directory."""
    root = tmp_path_factory.mktemp("serve-config")
    commands = {}
    for i, (variable, value, _) in enumerate(INVALID_CONFIGURATIONS):
        # A port that is free, unless the port itself is the case under test.
        args = [] if variable == "BIGUPLOAD_PORT" else ["--port", str(free_port())]
        commands[f"{variable}={value}"] = (
            root / str(i) / "data",
            ["serve", *args],
            {variable: value},
        )
    return run_many(commands)


@pytest.mark.parametrize(
    ("case", "named"),
    [(f"{v}={value}", named) for v, value, named in INVALID_CONFIGURATIONS],
    ids=[f"{v}={value}" for v, value, _ in INVALID_CONFIGURATIONS],
)
def test_serve_refuses_an_invalid_configuration_in_one_line(
    invalid_config_results: dict[str, Result], case: str, named: str
) -> None:
    result = invalid_config_results[case]
    assert result.code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bigupload: invalid configuration:")
    assert named in lines[0]
    assert "hunter2" not in result.stderr
    assert not KEY_RE.search(result.stderr + result.stdout)
