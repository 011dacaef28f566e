"""bigupload started as the container starts it, as a process of this machine, and stopped by
its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

WAIT = 60.0  # an upper bound against hanging, never a measure of speed


class Process:
    """One process; its standard error is read as it comes, on a thread."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)
        self.argv = argv
        self._lines: list[str] = []
        self._lock = threading.Condition()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            start_new_session=True,  # its own group: tini and bigupload end together
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self._lines.append(line.rstrip("\n"))
                self._lock.notify_all()

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def line_after(self, text: str) -> str:
        """The line after the first one containing ``text`` (how serve shows the admin key)."""
        deadline = time.monotonic() + WAIT
        with self._lock:
            while True:
                for n, line in enumerate(self._lines[:-1]):
                    if text in line:
                        return self._lines[n + 1].strip()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{self.argv} never printed {text!r}:\n{self.output}")
                self._lock.wait(0.5)

    def wait_until_answering(self, url: str) -> None:
        deadline = time.monotonic() + WAIT
        with httpx.Client(timeout=5, trust_env=False) as http:
            while True:
                if self.proc.poll() is not None:
                    pytest.fail(f"{self.argv} exited {self.proc.returncode}:\n{self.output}")
                try:
                    http.get(url)
                    return
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"{url} never answered:\n{self.output}")
                    time.sleep(0.1)

    def wait(self) -> int:
        try:
            return self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.argv} did not end within {WAIT}s:\n{self.output}")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Stop the process we started, by its PID: SIGTERM, then SIGKILL after a bounded wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        self._reader.join(timeout=5)
