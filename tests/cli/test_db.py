"""``bigupload db``: the registry's schema, from a real process."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from bigupload import migrate
from tests.cli.helpers import bigupload, without_registry_line


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}


def alembic_version(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]


@pytest.fixture(scope="module")
def head() -> str:
    revision = migrate.head_revision()
    assert revision
    return revision


def test_upgrade_prints_the_revision_and_is_idempotent(tmp_path: Path, head: str) -> None:
    data_dir = tmp_path / "data"
    db = data_dir / "bigupload.db"

    first = bigupload(data_dir, "db", "upgrade")
    assert first.code == 0, first.stderr
    assert first.stdout.splitlines() == [f"database at revision {head}"]
    assert "Traceback" not in first.stderr
    assert {"api_keys", "alembic_version"} <= tables(db)
    assert alembic_version(db) == [head]

    # What is in the registry survives a second upgrade, which changes nothing.
    with sqlite3.connect(db) as connection:
        connection.execute(
            "INSERT INTO api_keys (id, name, owner, prefix, key_hash, created_at)"
            " VALUES (?, 'alice', 'alice', 'bu_x', ?, '2026-01-01 00:00:00.000000')",
            (uuid.uuid4().hex, "0" * 64),
        )
    schema_before = tables(db)

    second = bigupload(data_dir, "db", "upgrade")
    assert second.code == 0, second.stderr
    assert second.stdout.splitlines() == [f"database at revision {head}"]
    assert tables(db) == schema_before
    assert alembic_version(db) == [head]
    with sqlite3.connect(db) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM api_keys")]
    assert names == ["alice"]

    current = bigupload(data_dir, "db", "current")
    assert current.code == 0, current.stderr
    assert current.stdout.splitlines() == [f"current: {head}; newest: {head}"]


def test_current_on_a_fresh_data_dir_refuses_and_creates_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = bigupload(data_dir, "db", "current")
    assert result.code == 2, result.stderr
    assert result.err_lines[0].startswith(f"bigupload: no registry at {data_dir.resolve()}")
    assert result.stdout == ""
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("command", "message"),
    [("upgrade", "cannot migrate the database: "), ("current", "cannot read the database: ")],
)
def test_unreachable_database_fails_in_one_line(tmp_path: Path, command: str, message: str) -> None:
    result = bigupload(
        tmp_path / "data",
        "db",
        command,
        BIGUPLOAD_DATABASE_URL="postgresql+asyncpg://u:hunter2@127.0.0.1:1/x",
    )
    assert result.code == 1, (result.stdout, result.stderr)
    lines = without_registry_line(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"bigupload: {message}")
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr
    assert result.stdout == ""


def test_upgrade_refuses_an_invalid_configuration(tmp_path: Path) -> None:
    result = bigupload(tmp_path / "data", "db", "upgrade", BIGUPLOAD_URL_EXPIRY_SECONDS="0")
    assert result.code == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bigupload: invalid configuration:")
    assert "BIGUPLOAD_URL_EXPIRY_SECONDS" in lines[0]
    assert not (tmp_path / "data").exists()


@pytest.mark.postgres
def test_upgrade_on_postgres(tmp_path: Path, postgres_server: Any, head: str) -> None:
    with postgres_server.temporary_database("cli_") as url:
        for _ in range(2):
            result = bigupload(tmp_path / "data", "db", "upgrade", BIGUPLOAD_DATABASE_URL=url)
            assert result.code == 0, result.stderr
            assert result.stdout.splitlines() == [f"database at revision {head}"]
    # Nothing of the registry went to the data directory.
    assert not (tmp_path / "data" / "bigupload.db").exists()
