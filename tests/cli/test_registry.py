"""Admin commands work on an existing registry, say which, and never make a second one.

``BIGUPLOAD_DATA_DIR`` defaults to ``./bigupload-data``: run from another directory, ``bigupload
keys create`` used to make a new, empty registry there, and its key then did not work against
the server. Only ``serve``, ``worker`` and ``db upgrade`` make a registry.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.helpers import (
    BIGUPLOAD,
    REGISTRY_LINE,
    TIMEOUT,
    Result,
    bigupload,
    clean_env,
    new_registry,
    run_many,
)

NEEDS_A_REGISTRY = {
    "keys-create": ["keys", "create", "alice"],
    "keys-list": ["keys", "list"],
    "keys-revoke": ["keys", "revoke", "alice"],
    "webhooks-deliveries": ["webhooks", "deliveries"],
    "webhooks-replay": ["webhooks", "replay", "1"],
    "sweep": ["sweep"],
    "db-current": ["db", "current"],
}


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Result]]:
    root = tmp_path_factory.mktemp("no-registry")
    commands = {case: (root / case / "data", args, {}) for case, args in NEEDS_A_REGISTRY.items()}
    results = run_many(commands)
    return {case: (commands[case][0], results[case]) for case in commands}


@pytest.mark.parametrize("case", NEEDS_A_REGISTRY)
def test_an_admin_command_refuses_a_data_dir_without_a_registry(
    refused: dict[str, tuple[Path, Result]], case: str
) -> None:
    data_dir, result = refused[case]
    assert result.code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.err_lines
    database = (data_dir / "bigupload.db").resolve()
    assert line.startswith(f"bigupload: no registry at {database}:"), line
    assert "BIGUPLOAD_DATA_DIR" in line
    assert result.stdout == ""
    assert not data_dir.exists()  # nothing made


def run_from(cwd: Path, *args: str, **env: str) -> Result:
    """``bigupload`` from ``cwd``, by default (no BIGUPLOAD_DATA_DIR) on ./bigupload-data."""
    environment = clean_env(cwd)
    del environment["BIGUPLOAD_DATA_DIR"]
    environment.update(env)
    done = subprocess.run(
        [str(BIGUPLOAD), *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_keys_create_from_another_directory_refuses_and_names_where_to_look(
    tmp_path: Path,
) -> None:
    server_dir = tmp_path / "server"
    new_registry(server_dir / "bigupload-data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    stray = run_from(elsewhere, "keys", "create", "alice")
    assert stray.code == 2, stray.stderr
    [line] = stray.err_lines
    assert str((elsewhere / "bigupload-data" / "bigupload.db").resolve()) in line
    assert "BIGUPLOAD_DATA_DIR" in line
    assert not (elsewhere / "bigupload-data").exists()

    # Pointed at the server's registry, from the same directory, it works and says where.
    made = run_from(
        elsewhere,
        "keys",
        "create",
        "alice",
        BIGUPLOAD_DATA_DIR=str(server_dir / "bigupload-data"),
    )
    assert made.code == 0, made.stderr
    database = (server_dir / "bigupload-data" / "bigupload.db").resolve()
    assert made.err_lines == [f"{REGISTRY_LINE}{database}"]
    assert made.out_lines[0].startswith("bu_")


def test_db_upgrade_makes_the_registry_and_says_where(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = bigupload(data_dir, "db", "upgrade")
    assert made.code == 0, made.stderr
    assert made.err_lines == [f"{REGISTRY_LINE}{(data_dir / 'bigupload.db').resolve()}"]
    listed = bigupload(data_dir, "keys", "list")
    assert listed.code == 0, listed.stderr
    assert listed.err_lines == made.err_lines


def test_a_postgresql_registry_is_named_without_its_password(tmp_path: Path) -> None:
    result = bigupload(
        tmp_path / "data",
        "keys",
        "list",
        BIGUPLOAD_DATABASE_URL="postgresql+asyncpg://u:hunter2@127.0.0.1:1/x",
    )
    assert result.code == 1, (result.stdout, result.stderr)
    assert result.err_lines[0] == f"{REGISTRY_LINE}postgresql+asyncpg://u:***@127.0.0.1:1/x"
    assert "hunter2" not in result.stderr
