"""What the CLI tests share: running ``bigupload`` as a real process on a fresh data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

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
    # A JSON setting that is not JSON: pydantic-settings fails before validation.
    ("BIGUPLOAD_WEBHOOKS", "notjson", "BIGUPLOAD_WEBHOOKS: not valid JSON"),
    ("BIGUPLOAD_WEBHOOKS", '[{"url": "ftp://x"}', "BIGUPLOAD_WEBHOOKS: not valid JSON"),
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


def new_registry(data_dir: Path) -> Path:
    """Make the registry in ``data_dir`` as an operator would (admin commands need one)."""
    made = bigupload(data_dir, "db", "upgrade")
    assert made.code == 0, made.stderr
    return data_dir


REGISTRY_LINE = "bigupload: registry "


def without_registry_line(stderr: str) -> list[str]:
    """Stderr's lines less the first, which names the registry an admin command used."""
    lines = stderr.splitlines()
    assert lines and lines[0].startswith(REGISTRY_LINE), stderr
    return lines[1:]


def run_many(commands: dict[str, tuple[Path, list[str], dict[str, str]]]) -> dict[str, Result]:
    """Run independent commands side by side; each is still one bounded process of its own."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {
            name: pool.submit(bigupload, data_dir, *args, **env)
            for name, (data_dir, args, env) in commands.items()
        }
        return {name: future.result() for name, future in futures.items()}


STOP_TIMEOUT = 15


class Server:
    """One ``bigupload serve`` process; its output is read as it comes, on two threads."""

    def __init__(
        self, data_dir: Path, port: int, *, args: tuple[str, ...] = (), **env: str
    ) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._lock = threading.Condition()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(BIGUPLOAD), "serve", "--port", str(port), *args],
            env=clean_env(data_dir, **env),
            cwd=data_dir.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self._stdout)),
            threading.Thread(target=self._read, args=(self.process.stderr, self._stderr)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    def _read(self, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                sink.append(line.rstrip("\n"))
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    @property
    def stderr(self) -> list[str]:
        with self._lock:
            return list(self._stderr)

    @property
    def stdout(self) -> list[str]:
        with self._lock:
            return list(self._stdout)

    def wait_for_line(self, text: str) -> str:
        """The first stderr line containing ``text``; fails if the process ends or hangs first."""
        deadline = time.monotonic() + TIMEOUT
        with self._lock:
            while True:
                for line in self._stderr:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                exited = self.process.poll() is not None and not any(
                    reader.is_alive() for reader in self._readers
                )
                if exited or remaining <= 0:
                    pytest.fail(
                        f"serve never printed {text!r} (exit {self.process.poll()}):\n"
                        + "\n".join(self._stderr)
                    )
                self._lock.wait(min(remaining, 0.5))

    def wait_until_answering(self) -> None:
        """Poll ``/health`` until the socket answers (uvicorn binds after the banner)."""
        deadline = time.monotonic() + TIMEOUT
        with httpx.Client(base_url=self.base_url, timeout=5, trust_env=False) as http:
            while True:
                if self.process.poll() is not None:
                    pytest.fail("serve exited:\n" + "\n".join(self.stderr))
                try:
                    http.get("/health")
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        pytest.fail("serve never answered:\n" + "\n".join(self.stderr))
                    time.sleep(0.1)

    def stop(self) -> None:
        """Stop the process we started, by its PID: terminate, then kill after a bounded wait."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        for reader in self._readers:
            reader.join(STOP_TIMEOUT)
