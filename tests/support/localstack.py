"""Start a strict, S3-compatible LocalStack server (no Docker) for tests.

LocalStack runs in its own Python 3.13 venv (``scripts/install-localstack.sh``) as a child
process. Unlike moto, it enforces SigV4 signatures, URL expiry, signed Content-Length /
Content-Type and checksums on presigned URLs, so use it for tests that need the store to refuse
something.

Pitfall handled here: LocalStack's S3 provider keeps object data under the hard-coded
``/tmp/localstack-s3-storage`` folder, whatever TMPDIR says, so only one instance per machine can
run safely. ``LocalStackServer`` holds an exclusive ``fcntl`` lock for the lifetime of the server
(the child inherits it too, so a leaked server keeps the lock), which serializes concurrent test
runs, and it empties that folder at start and stop.

Usage::

    with LocalStackServer() as server:
        s3 = make_client(server.endpoint_url)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # boto3-stubs[s3] (dev dependency); falls back to Any when the stubs are not installed
    from mypy_boto3_s3 import S3Client  # type: ignore[import-not-found,unused-ignore]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO_ROOT / ".venv-localstack"

# Hard-coded in localstack/services/s3/provider.py (DEFAULT_S3_TMP_DIR); not affected by TMPDIR.
S3_STORAGE_DIR = Path("/tmp/localstack-s3-storage")
LOCK_PATH = Path("/tmp/localstack-s3-storage.lock")

SERVICES = "s3,sqs,sns"
REGION = "us-east-1"
ACCESS_KEY = "test"
SECRET_KEY = "test"

# Environment variables passed through from the parent; everything else is dropped so a
# developer's LocalStack / AWS settings (PERSISTENCE, DEBUG, AWS_*, ...) cannot leak in.
_PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE")


def find_localstack_python() -> Path:
    """Return the LocalStack venv interpreter, or raise a RuntimeError saying how to get it."""
    override = os.environ.get("LOCALSTACK_PYTHON")
    if override:
        candidate = Path(override)
    else:
        venv = Path(os.environ.get("LOCALSTACK_VENV") or DEFAULT_VENV)
        candidate = venv / "bin" / "python"
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        raise RuntimeError(
            f"LocalStack python not found at {candidate}: run scripts/install-localstack.sh "
            "(or set LOCALSTACK_PYTHON to a Python 3.13 with localstack-core[runtime] installed)"
        )
    return candidate


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, max_bytes: int = 6000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<no log: {exc}>"


class LocalStackServer:
    """A LocalStack (S3, SQS, SNS) child process on a free loopback port.

    ``start()`` blocks until ``/_localstack/health`` reports S3 available (or raises with the
    log tail); ``stop()`` terminates the process group it started and removes its temp dirs.
    """

    def __init__(
        self,
        *,
        python: str | os.PathLike[str] | None = None,
        services: str = SERVICES,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        lock_timeout: float = 600.0,
        extra_env: Mapping[str, str] | None = None,
        keep_temp: bool = False,
    ) -> None:
        self._python = Path(python) if python is not None else None
        self.services = services
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.lock_timeout = lock_timeout
        self.extra_env: dict[str, str] = dict(extra_env or {})
        self.keep_temp = keep_temp

        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._tmpdir: Path | None = None
        self._port: int | None = None
        self.log_path: Path | None = None
        self.lock_wait_seconds: float | None = None  # time spent waiting for another instance
        self.start_seconds: float | None = None  # lock wait excluded
        self.stop_needed_sigkill: bool | None = None  # diagnostics: SIGTERM did not suffice

    # -- public API -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None or self._proc is None:
            raise RuntimeError("LocalStackServer is not running")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> LocalStackServer:
        if self._proc is not None:
            raise RuntimeError("LocalStackServer already started")
        python = self._python or find_localstack_python()
        t0 = time.monotonic()
        self._acquire_lock()
        self.lock_wait_seconds = time.monotonic() - t0
        t0 = time.monotonic()
        try:
            shutil.rmtree(S3_STORAGE_DIR, ignore_errors=True)
            self._tmpdir = Path(tempfile.mkdtemp(prefix="bigupload-localstack-"))
            last_error: RuntimeError | None = None
            for _attempt in range(3):  # retry only if the picked port was taken meanwhile
                try:
                    self._spawn(python)
                    self._wait_healthy()
                    self.start_seconds = time.monotonic() - t0
                    return self
                except _PortInUse as exc:
                    last_error = exc
                    self._terminate()
            assert last_error is not None
            raise last_error
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            self._terminate()
        finally:
            shutil.rmtree(S3_STORAGE_DIR, ignore_errors=True)
            if self._tmpdir is not None and not self.keep_temp:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            self._release_lock()

    def __enter__(self) -> LocalStackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, max_bytes: int = 6000) -> str:
        return _tail(self.log_path, max_bytes) if self.log_path else ""

    # -- internals --------------------------------------------------------------------------

    def _acquire_lock(self) -> None:
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    try:
                        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                    except OSError:
                        holder = "?"
                    os.close(fd)
                    raise RuntimeError(
                        f"another LocalStack holds {LOCK_PATH} (last holder: {holder or '?'}) "
                        f"after waiting {self.lock_timeout:.0f}s; only one instance per machine "
                        "can use /tmp/localstack-s3-storage"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _env(self, port: int, tmpdir: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
        env.update(
            {
                "OVERRIDE_IN_DOCKER": "0",
                "SERVICES": self.services,
                "GATEWAY_LISTEN": f"127.0.0.1:{port}",
                "GATEWAY_SERVER": "hypercorn",
                "LOCALSTACK_HOST": f"127.0.0.1:{port}",
                "S3_SKIP_SIGNATURE_VALIDATION": "0",
                "FILESYSTEM_ROOT": str(tmpdir / "fs"),
                "CONFIG_DIR": str(tmpdir / "config"),
                "TMPDIR": str(tmpdir / "tmp"),  # isolates tempfile use (warns: deprecated var)
                # no network at start, no side effects on the machine
                "DISABLE_EVENTS": "1",  # analytics / telemetry
                "SKIP_SSL_CERT_DOWNLOAD": "1",
                "DNS_ADDRESS": "0",  # do not start the DNS server (port 53)
                "PERSISTENCE": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _spawn(self, python: Path) -> None:
        assert self._tmpdir is not None and self._lock_fd is not None
        port = _free_loopback_port()
        for sub in ("fs", "config", "tmp"):
            (self._tmpdir / sub).mkdir(exist_ok=True)
        self.log_path = self._tmpdir / "localstack.log"
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(python), "-m", "localstack.runtime.main"],
                cwd=self._tmpdir,
                env=self._env(port, self._tmpdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # the child holds the lock too: a leaked server keeps others out of the storage dir
                pass_fds=(self._lock_fd,),
                preexec_fn=_die_with_parent,
            )
        self._port = port
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"pid={os.getpid()} server_pid={self._proc.pid}\n".encode(), 0)

    def _wait_healthy(self) -> None:
        assert self._proc is not None and self._port is not None
        url = f"http://127.0.0.1:{self._port}/_localstack/health"
        deadline = time.monotonic() + self.start_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    raise _PortInUse(f"port {self._port} taken:\n{tail}")
                raise RuntimeError(
                    f"LocalStack exited with code {code} during start; log tail:\n{tail}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    body: dict[str, Any] = json.loads(resp.read())
                state = body.get("services", {}).get("s3")
                if state in ("available", "running"):
                    return
                last = f"s3={state!r}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise RuntimeError(
            f"LocalStack not healthy after {self.start_timeout:.0f}s ({last}); "
            f"log tail:\n{self.log_tail()}"
        )

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        self._port = None
        if proc is None or proc.returncode is not None:
            return  # never started, or already reaped: its group id may be reused, send nothing
        # start_new_session=True: the child leads its own process group (pgid == pid). The leader
        # is not reaped until the end, so even as a zombie it keeps that id from being reused.
        pgid = proc.pid
        self.stop_needed_sigkill = False
        if not _exited(proc.pid, 0):
            _killpg(pgid, signal.SIGTERM)
            # LocalStack sometimes hangs on SIGTERM
            self.stop_needed_sigkill = not _exited(proc.pid, self.stop_timeout)
        _killpg(pgid, signal.SIGKILL)  # the leader if still alive, and any helper it spawned
        _exited(proc.pid, 5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for child ``pid`` to exit, without reaping it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if info is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL it when the parent dies (e.g. pytest killed).

    SIGKILL, not SIGTERM: LocalStack sometimes hangs on SIGTERM, and nobody would escalate.

    Note: Linux ties this to the *thread* that forked, so start the server from a long-lived
    thread (pytest fixtures run in the main thread).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class _PortInUse(RuntimeError):
    pass


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def make_client(endpoint_url: str) -> S3Client:
    """A boto3 S3 client for LocalStack: SigV4, path-style, us-east-1, test/test credentials."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
