"""``bigupload ls / info / download / rm`` with short ids, and ``ls`` on a narrow terminal."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bigupload.db import create_engine, create_sessionmaker
from bigupload.files.models import FileRecord
from tests.cli.helpers import BIGUPLOAD, TIMEOUT, clean_env
from tests.cli.test_transfer import Cli, one_line_error, random_file
from tests.support.harness import Harness, proxied_service, sha256_of

#: Two ids that share their first 8 hex digits, and a third that shares 4 with them.
TWINS = ("abcd1234-0000-4000-8000-000000000001", "abcd1234-0000-4000-8000-000000000002")
COUSIN = "abcd9999-0000-4000-8000-000000000003"


@pytest.fixture
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with proxied_service(request, tmp_path) as harness:
        yield harness


@pytest.fixture
def cli(harness: Harness, tmp_path: Path) -> Cli:
    return Cli(harness, tmp_path)


def plant(harness: Harness, owner: str, *ids: str) -> None:
    """Pending files with the given ids, straight into the service's registry."""

    async def insert() -> None:
        engine = create_engine(harness.service.settings.effective_database_url)
        now = datetime.now(UTC)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                for text in ids:
                    session.add(
                        FileRecord(
                            id=uuid.UUID(text),
                            owner=owner,
                            bucket="local",
                            key=f"uploads/{owner}/{text}",
                            filename=f"{text[:4]}.bin",
                            content_type="application/octet-stream",
                            size=10,
                            created_at=now,
                            updated_at=now,
                        )
                    )
        finally:
            await engine.dispose()

    asyncio.run(insert())


def test_a_unique_prefix_names_the_file(cli: Cli, harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "in" / "one.bin"
    digest = random_file(path, 1000)
    up = cli("upload", str(path))
    assert up.code == 0, up.stderr
    [file_id] = up.out_lines
    plant(harness, "owner", *TWINS, COUSIN)
    short = file_id[:8]

    shown = cli("info", short, "--json")
    assert shown.code == 0, shown.stderr
    assert f'"id": "{file_id}"' in shown.stdout
    got = cli("download", file_id[:6], "-o", str(tmp_path / "copy.bin"))
    assert got.code == 0, got.stderr
    assert sha256_of(tmp_path / "copy.bin") == digest
    assert cli("info", COUSIN[:6]).code == 0  # abcd99: one file, though abcd begins three

    removed = cli("rm", short)
    assert removed.code == 0, removed.stderr
    assert file_id in removed.stderr
    assert one_line_error(cli("info", file_id), 4)


def test_an_ambiguous_prefix_lists_the_candidates(cli: Cli, harness: Harness) -> None:
    plant(harness, "owner", *TWINS, COUSIN)
    for command in (["info"], ["download"], ["rm"]):
        result = cli(*command, "abcd1234")
        line = one_line_error(result, 2)
        assert TWINS[0] in line and TWINS[1] in line and COUSIN not in line, line
    every = one_line_error(cli("info", "abcd"), 2)
    assert all(i in every for i in (*TWINS, COUSIN))
    # Nothing was deleted.
    assert cli("info", TWINS[0]).code == 0 and cli("info", TWINS[1]).code == 0


def test_a_prefix_of_no_file_is_not_found(cli: Cli, harness: Harness) -> None:
    plant(harness, "someone-else", TWINS[0])  # another owner's file is not a candidate
    for command in (["info"], ["download"], ["rm"]):
        assert "abcd1234" in one_line_error(cli(*command, "abcd1234"), 4)


def test_ls_on_an_80_column_terminal_shows_whole_ids(
    cli: Cli, harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "in" / ("a-rather-long-file-name-" * 3 + ".tar.gz")
    random_file(path, 1000)
    up = cli("upload", str(path))
    assert up.code == 0, up.stderr
    plant(harness, "owner", *TWINS)
    ids = [*up.out_lines, *TWINS]

    primary, secondary = pty.openpty()  # stdout a terminal: the table, not tab-separated lines
    try:
        process = subprocess.Popen(
            [str(BIGUPLOAD), "ls"],
            env=clean_env(cli.data_dir, **cli.env, COLUMNS="80", LINES="24", TERM="dumb"),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=secondary,
            stderr=subprocess.PIPE,
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: the process is done writing
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(TIMEOUT)
    finally:
        os.close(primary)
    output = b"".join(chunks).decode()
    assert process.returncode == 0, output
    lines = output.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80, output
    for file_id in ids:
        assert any(file_id in line for line in lines), output
