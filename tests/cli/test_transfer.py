"""``bigupload upload / ls / info / download / rm`` as real processes against a real service."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import BIGUPLOAD, TIMEOUT, Result, bigupload, clean_env, run_many
from tests.support.faults import FaultPlan
from tests.support.harness import PART, Harness, proxied_service, sha256_of
from tests.support.net import free_port

MiB = 1024 * 1024
UUID_LEN = 36


@pytest.fixture
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with proxied_service(request, tmp_path) as harness:
        yield harness


class Cli:
    """``bigupload`` run against the harness's service, with the URL and key from the
    environment and its own cache directory."""

    def __init__(self, harness: Harness, tmp_path: Path) -> None:
        self.harness = harness
        self.data_dir = tmp_path / "cli" / "data"
        self.env = {
            "BIGUPLOAD_URL": harness.url,
            "BIGUPLOAD_API_KEY": harness.service.api_key,
            "BIGUPLOAD_CACHE_DIR": str(harness.cache_dir),
        }

    def __call__(self, *args: str, **env: str) -> Result:
        return bigupload(self.data_dir, *args, **(self.env | env))

    def many(self, *commands: tuple[str, ...], **env: str) -> list[Result]:
        """Independent commands, side by side."""
        results = run_many(
            {str(i): (self.data_dir, list(args), self.env | env) for i, args in enumerate(commands)}
        )
        return [results[str(i)] for i in range(len(commands))]

    def popen(self, *args: str) -> subprocess.Popen[str]:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [str(BIGUPLOAD), *args],
            env=clean_env(self.data_dir, **self.env),
            cwd=self.data_dir.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def cli(harness: Harness, tmp_path: Path) -> Cli:
    return Cli(harness, tmp_path)


def random_file(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def one_line_error(result: Result, code: int) -> str:
    assert result.code == code, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.err_lines) == 1, result.stderr
    assert result.err_lines[0].startswith("bigupload: "), result.stderr
    assert result.stdout == ""
    return result.err_lines[0]


def test_round_trip(cli: Cli, tmp_path: Path) -> None:
    small, big = tmp_path / "in" / "small.txt", tmp_path / "in" / "big.bin"
    small_digest = random_file(small, 1000)
    big_digest = random_file(big, 2 * PART + 17)

    up = cli("upload", str(small), str(big), "--concurrency", "2")
    assert up.code == 0, up.stderr
    assert len(up.out_lines) == 2 and all(len(line) == UUID_LEN for line in up.out_lines)
    small_id, big_id = up.out_lines
    assert small_id in up.stderr and big_id in up.stderr  # the summary table
    assert cli.harness.states() == []

    listed = cli("ls")
    assert listed.code == 0, listed.stderr
    rows = [line.split("\t") for line in listed.out_lines]
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        (big_id, "uploaded", str(2 * PART + 17), "big.bin"),
        (small_id, "uploaded", "1000", "small.txt"),
    ]
    assert cli("ls", "--limit", "1").out_lines == [listed.out_lines[0]]
    assert cli("ls", "--status", "aborted").out_lines == []
    as_json = json.loads(cli("ls", "--json").stdout)
    assert {f["id"] for f in as_json} == {small_id, big_id}

    shown = cli("info", small_id)
    assert shown.code == 0
    assert any(line.split() == ["filename", "small.txt"] for line in shown.out_lines)
    assert json.loads(cli("info", big_id, "--json").stdout)["stored_size"] == 2 * PART + 17

    out = tmp_path / "out"
    out.mkdir()
    got = cli("download", big_id, "-o", str(out))
    assert got.code == 0, got.stderr
    assert got.out_lines == [str(out / "big.bin")]
    assert sha256_of(out / "big.bin") == big_digest
    again = cli("download", big_id, "-o", str(out))
    assert "exists; pass --force" in one_line_error(again, 2)
    (out / "small.txt").write_text("mine")
    forced = cli("download", small_id, "-o", str(out / "small.txt"), "--force")
    assert forced.code == 0, forced.stderr
    assert sha256_of(out / "small.txt") == small_digest

    removed = cli("rm", small_id)
    assert removed.code == 0 and removed.stdout == ""
    assert one_line_error(cli("info", small_id), 4)
    assert [line.split("\t")[0] for line in cli("ls").out_lines] == [big_id]


def test_an_interrupted_upload_resumes(cli: Cli, tmp_path: Path) -> None:
    """Ctrl-C once parts 1 and 2 are stored (the others are held back): exit 130 with a hint;
    the same command then sends only the other parts."""
    path = tmp_path / "in" / "big.bin"
    digest = random_file(path, 5 * PART)
    proxy = cli.harness.proxy
    proxy.plan = FaultPlan(
        explicit={f"PUT part {n}": ["503"] for n in range(3, 6)}, retry_after="600"
    )
    process = cli.popen("upload", str(path), "--concurrency", "2")
    try:
        deadline = time.monotonic() + TIMEOUT
        while {r.part_number for r in proxy.parts_sent() if r.status == 200} != {1, 2}:
            assert time.monotonic() < deadline, "parts 1 and 2 never landed"
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stdout == ""
    assert stderr.strip().endswith("interrupted; run the same command again to resume")
    assert "Traceback" not in stderr

    proxy.plan = FaultPlan()
    mark = len(proxy.snapshot())
    resumed = cli("upload", str(path))
    assert resumed.code == 0, resumed.stderr
    assert sorted(r.part_number for r in proxy.parts_sent(since=mark)) == [3, 4, 5]
    file_id = resumed.out_lines[0]
    got = cli("download", file_id, "-o", str(tmp_path / "copy.bin"))
    assert got.code == 0, got.stderr
    assert sha256_of(tmp_path / "copy.bin") == digest


def test_missing_url_or_key(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "in" / "a.bin"
    random_file(path, 10)
    assert "BIGUPLOAD_API_KEY" in one_line_error(cli("upload", str(path), BIGUPLOAD_API_KEY=""), 2)
    assert "BIGUPLOAD_URL" in one_line_error(cli("ls", BIGUPLOAD_URL=""), 2)
    assert "not an http(s) URL" in one_line_error(cli("ls", "--url", "ftp://x"), 2)


def test_a_bad_key_is_refused(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "in" / "a.bin"
    random_file(path, 10)
    bad = "bu_" + "x" * 43
    commands = [("upload", str(path)), ("ls",), ("info", "x"), ("rm", "x")]
    for result in cli.many(*commands, BIGUPLOAD_API_KEY=bad):
        assert bad not in one_line_error(result, 3)


def test_an_unknown_id_is_not_found(cli: Cli, tmp_path: Path) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    commands = [("info", unknown), ("download", unknown, "-o", str(tmp_path)), ("rm", unknown)]
    for result in cli.many(*commands):
        assert "no such file" in one_line_error(result, 4)


def test_an_unreachable_server(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "in" / "a.bin"
    random_file(path, 10)
    nowhere = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(cli("upload", str(path), "--retries", "1", "--url", nowhere), 1)
    assert "cannot connect" in line
    assert "cannot connect" in one_line_error(cli("ls", "--retries", "0", "--url", nowhere), 1)


def test_usage_errors(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "in" / "a.bin"
    random_file(path, 10)
    missing = tmp_path / "in" / "missing.bin"
    absent, directory, part_size, status = cli.many(
        ("upload", str(path), str(missing)),
        ("upload", str(tmp_path)),
        ("upload", str(path), "--part-size", "lots"),
        ("ls", "--status", "lost"),
    )
    assert "no such file" in one_line_error(absent, 2)
    assert "not a regular file" in one_line_error(directory, 2)
    assert "--part-size" in one_line_error(part_size, 2)
    assert "--status: lost" in one_line_error(status, 2)
    assert cli.harness.proxy.snapshot() == [], "nothing was sent"


def test_several_files_go_on_after_one_fails(cli: Cli, tmp_path: Path) -> None:
    """A file the server refuses does not stop the others; the exit code tells."""
    empty = tmp_path / "in" / "empty.bin"
    empty.parent.mkdir(parents=True)
    empty.touch()
    good = tmp_path / "in" / "good.bin"
    random_file(good, 100)
    result = cli("upload", str(empty), str(good))
    assert result.code == 1
    assert len(result.out_lines) == 1 and len(result.out_lines[0]) == UUID_LEN
    assert result.err_lines[-1].startswith(f"bigupload: {empty}: ")
    assert "empty" in result.err_lines[-1]
