"""What the CLI tests share: running ``bigupload`` as a real process on a fresh data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

BIGUPLOAD = Path(sys.executable).with_name("bigupload")
TIMEOUT = 60  # an upper bound against hanging, never a measure of speed

#: ``(variable, value, the name the one-line error must give)``; the database URL carries a
#: password, so a test can check it is never shown.
INVALID_CONFIGURATIONS = [
    ("BIGUPLOAD_MAX_FILE_SIZE", "-3", "BIGUPLOAD_MAX_FILE_SIZE"),
    ("BIGUPLOAD_STORAGE", "ftp", "BIGUPLOAD_STORAGE"),
    ("BIGUPLOAD_STORAGE", "s3", "BIGUPLOAD_S3_BUCKET"),
    ("BIGUPLOAD_SECRET_KEY", "changeme", "BIGUPLOAD_SECRET_KEY"),
    ("BIGUPLOAD_ALLOWED_CONTENT_TYPES", "notatype", "BIGUPLOAD_ALLOWED_CONTENT_TYPES"),
    ("BIGUPLOAD_DATABASE_URL", "mysql://u:hunter2@x/db", "BIGUPLOAD_DATABASE_URL"),
    ("BIGUPLOAD_PORT", "abc", "BIGUPLOAD_PORT"),
]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def out_lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any ``BIGUPLOAD_*`` setting, on ``data_dir``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BIGUPLOAD_") and k not in ("FORCE_COLOR", "COLUMNS")
    }
    env["BIGUPLOAD_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def bigupload(data_dir: Path, *args: str, **extra_env: str) -> Result:
    """Run ``bigupload <args>`` in its own process, from the data directory's parent (no stray
    .env); a command that does not end by itself is killed after :data:`TIMEOUT`."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(BIGUPLOAD), *args],
        env=clean_env(data_dir, **extra_env),
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_many(commands: dict[str, tuple[Path, list[str], dict[str, str]]]) -> dict[str, Result]:
    """Run independent commands side by side; each is still one bounded process of its own."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {
            name: pool.submit(bigupload, data_dir, *args, **env)
            for name, (data_dir, args, env) in commands.items()
        }
        return {name: future.result() for name, future in futures.items()}
