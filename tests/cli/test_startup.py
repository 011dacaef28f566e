"""The client commands start without the server stack (SQLAlchemy, FastAPI, boto3, Alembic ...).

What each command imports is read from ``python -X importtime`` of a real process: the test
counts modules, it does not time anything (``bench/cli_startup.py`` measures the time).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import TIMEOUT, clean_env

SERVER_STACK = ("sqlalchemy", "fastapi", "starlette", "boto3", "botocore", "alembic", "uvicorn")

CLIENT_COMMANDS = {
    "help": ["--help"],
    "upload-help": ["upload", "--help"],
    "download-help": ["download", "--help"],
    "ls-help": ["ls", "--help"],
    "info-help": ["info", "--help"],
    "rm-help": ["rm", "--help"],
    # Past option parsing, into the command: it stops at its usage error (no server given).
    "ls-run": ["ls"],
    "upload-run": ["upload", __file__],
}


def imported_modules(tmp_path: Path, *args: str) -> set[str]:
    """The top-level packages a ``bigupload`` process imports, from its ``-X importtime`` log."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bigupload", *args],
        env=clean_env(tmp_path / "data"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    modules = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "bigupload" in modules, done.stderr[-2000:]  # the log was read
    return modules


@pytest.mark.parametrize("case", CLIENT_COMMANDS)
def test_client_commands_import_no_server_stack(tmp_path: Path, case: str) -> None:
    modules = imported_modules(tmp_path, *CLIENT_COMMANDS[case])
    assert "typer" in modules
    assert not modules & set(SERVER_STACK), sorted(modules & set(SERVER_STACK))


def test_the_client_cli_modules_import_no_server_stack() -> None:
    code = (
        "import sys, bigupload.cli, bigupload.cli.files, bigupload.cli.transfer, bigupload.client;"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(SERVER_STACK)!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_server_command_still_loads_its_stack(tmp_path: Path) -> None:
    """The check above would pass if ``-X importtime`` saw nothing: here it sees SQLAlchemy."""
    modules = imported_modules(tmp_path, "db", "upgrade")
    assert {"sqlalchemy", "alembic"} <= modules
