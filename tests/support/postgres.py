"""Throwaway PostgreSQL server for the test suite.

Starts a private ``postgres`` from the Debian binaries in
``/usr/lib/postgresql/<version>/bin`` (install them with
``scripts/install-postgres.sh``) on a free loopback port, with a temporary
data directory that is removed again on :meth:`PostgresServer.stop`.

When running as root (CI), ``initdb`` and ``postgres`` refuse to run, so they
are executed as the unprivileged ``postgres`` system user (or ``nobody``)
through ``setpriv`` (which execs in place, so the PID we hold *is* the
postmaster) or, failing that, ``runuser``.

Usage::

    with PostgresServer() as pg:
        engine = create_async_engine(pg.url)
        other_url = pg.create_database("scratch")

Only stdlib is used; clients (psql, pg_isready) come from the same bin dir.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["PostgresServer", "find_pg_bin_dir"]

PG_BIN_ENV = "BIGUPLOAD_PG_BIN"
PG_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "run `scripts/install-postgres.sh` (as root) to install PostgreSQL"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
DEFAULT_DATABASE = "bigupload"

_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "psql", "pg_isready")
_UNPRIVILEGED_USERS = ("postgres", "nobody")
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in path.name.split("."))
    except ValueError:
        return (-1,)


def find_pg_bin_dir() -> Path:
    """Return the PostgreSQL bin dir: ``$BIGUPLOAD_PG_BIN`` or the highest
    ``/usr/lib/postgresql/<version>/bin`` that contains the needed binaries."""
    override = os.environ.get(PG_BIN_ENV)
    if override:
        candidates = [Path(override)]
    else:
        versions = sorted(
            (p for p in PG_ROOT.glob("*") if p.is_dir()), key=_version_key, reverse=True
        )
        candidates = [v / "bin" for v in versions]
    for bin_dir in candidates:
        if all(os.access(bin_dir / name, os.X_OK) for name in _REQUIRED_BINARIES):
            return bin_dir
    where = f"${PG_BIN_ENV}={override}" if override else f"{PG_ROOT}/*/bin"
    raise RuntimeError(
        f"PostgreSQL server binaries ({', '.join(_REQUIRED_BINARIES)}) not found in "
        f"{where}; {INSTALL_HINT}"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _world_traversable(path: Path) -> bool:
    """True if an unprivileged user can reach ``path`` (o+x on it and all parents)."""
    for p in (path, *path.parents):
        try:
            if not p.stat().st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


class PostgresServer:
    """A private PostgreSQL server on a free 127.0.0.1 port (trust auth)."""

    def __init__(
        self,
        bin_dir: Path | str | None = None,
        *,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        extra_settings: dict[str, str] | None = None,
    ) -> None:
        self._bin_dir_arg = Path(bin_dir) if bin_dir is not None else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.extra_settings = dict(extra_settings or {})

        self.bin_dir: Path | None = None
        self.tmp_dir: Path | None = None
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.port: int | None = None
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._via_runuser = False
        #: Whether ``CREATE DATABASE`` takes ``STRATEGY FILE_COPY`` (PostgreSQL 15 and later).
        self._file_copy = False

    # ------------------------------------------------------------------ URLs

    @property
    def host(self) -> str:
        return HOST

    @property
    def user(self) -> str:
        return SUPERUSER

    def url_for(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        if self.port is None:
            raise RuntimeError("PostgresServer is not running")
        return f"{driver}://{SUPERUSER}@{HOST}:{self.port}/{database}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``bigupload`` database (asyncpg driver)."""
        return self.url_for(DEFAULT_DATABASE)

    @property
    def dsn(self) -> str:
        """libpq/asyncpg DSN (``postgresql://...``) of the ``bigupload`` database."""
        return self.url_for(DEFAULT_DATABASE, driver="postgresql")

    # --------------------------------------------------------- process helpers

    def _bin(self, name: str) -> str:
        assert self.bin_dir is not None
        return str(self.bin_dir / name)

    def _env(self) -> dict[str, str]:
        # Drop PG* variables (PGDATA, PGPORT, PGHOST, ...) that could redirect tools.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env.pop("LANGUAGE", None)
        if self._run_as is not None:
            assert self.tmp_dir is not None
            env.update(
                HOME=str(self.tmp_dir), USER=self._run_as.pw_name, LOGNAME=self._run_as.pw_name
            )
        return env

    def _as_server_user(self, argv: list[str]) -> list[str]:
        """Wrap argv so it runs as the unprivileged user when we are root."""
        user = self._run_as
        if user is None:
            return argv
        setpriv = shutil.which("setpriv")
        if setpriv and not self._via_runuser:
            # setpriv execs in place: the PID of the Popen is the program itself.
            return [
                setpriv,
                f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}",
                "--init-groups",
                "--",
                *argv,
            ]
        runuser = shutil.which("runuser")
        if runuser is None:
            raise RuntimeError("running as root but neither setpriv nor runuser is available")
        self._via_runuser = True
        return [runuser, "-u", user.pw_name, "--", *argv]

    def _run_server_tool(self, argv: list[str], timeout: float = 60.0) -> None:
        assert self.tmp_dir is not None
        res = subprocess.run(
            self._as_server_user(argv),
            cwd=self.tmp_dir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            out = res.stdout.decode(errors="replace")
            raise RuntimeError(f"{argv[0]} failed (exit {res.returncode}):\n{out}")

    def psql(self, sql: str, database: str = "postgres", timeout: float = 60.0) -> str:
        """Run SQL with the bundled ``psql`` (as the current OS user, over TCP)."""
        if self.port is None or self.tmp_dir is None:
            raise RuntimeError("PostgresServer is not running")
        res = subprocess.run(
            [
                self._bin("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                HOST,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            cwd=self.tmp_dir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(
                f"psql failed (exit {res.returncode}) for {sql!r}:\n"
                f"{res.stderr.decode(errors='replace')}"
            )
        return res.stdout.decode()

    def log_tail(self, max_chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-max_chars:]

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("PostgresServer already started")
        self.bin_dir = self._bin_dir_arg or find_pg_bin_dir()
        if self._bin_dir_arg is not None:
            missing = [n for n in _REQUIRED_BINARIES if not os.access(self.bin_dir / n, os.X_OK)]
            if missing:
                raise RuntimeError(f"{missing} not found in {self.bin_dir}; {INSTALL_HINT}")

        is_root = os.geteuid() == 0
        if is_root:
            self._run_as = self._pick_unprivileged_user()
        parent: str | None = None
        if is_root and not _world_traversable(Path(tempfile.gettempdir())):
            parent = "/tmp"  # e.g. TMPDIR under /root: server user could not reach it
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="bigupload-pg-", dir=parent))
        try:
            if self._run_as is not None:
                os.chown(self.tmp_dir, self._run_as.pw_uid, self._run_as.pw_gid)
            self.data_dir = self.tmp_dir / "data"
            self.log_path = self.tmp_dir / "postgres.log"
            self._initdb()
            self._start_server()
            self._file_copy = int(self.psql("SHOW server_version_num").strip()) >= 150000
            self.psql(f"CREATE DATABASE {_quote_ident(DEFAULT_DATABASE)}")
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    @staticmethod
    def _pick_unprivileged_user() -> pwd.struct_passwd:
        for name in _UNPRIVILEGED_USERS:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            if entry.pw_uid != 0:
                return entry
        raise RuntimeError(
            f"running as root but none of the users {_UNPRIVILEGED_USERS} exist; {INSTALL_HINT}"
        )

    def _initdb(self) -> None:
        assert self.data_dir is not None
        self._run_server_tool(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",  # local + host (127.0.0.1/32, ::1/128) lines
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )

    def _start_server(self, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            self.port = _free_port()
            if self._spawn_and_wait():
                return
            log = self.log_tail()
            self._kill_proc()
            port_taken = "could not bind" in log or "already in use" in log
            if port_taken and attempt < attempts:
                continue  # lost the free-port race; try another port
            raise RuntimeError(f"PostgreSQL failed to start; server log:\n{log}")

    def _spawn_and_wait(self) -> bool:
        """Spawn the postmaster; True once it accepts connections, False if it died."""
        assert self.tmp_dir is not None and self.data_dir is not None
        assert self.log_path is not None and self.port is not None
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(self.tmp_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            **self.extra_settings,
        }
        argv = [self._bin("postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._as_server_user(argv),
                cwd=self.tmp_dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self._proc.pid

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            ready = subprocess.run(
                [
                    self._bin("pg_isready"),
                    "-q",
                    "-t",
                    "1",
                    "-h",
                    HOST,
                    "-p",
                    str(self.port),
                    "-U",
                    SUPERUSER,
                    "-d",
                    "postgres",
                ],
                env=self._env(),
                cwd=self.tmp_dir,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            if ready.returncode == 0:
                return True
            time.sleep(0.05)
        self._kill_proc()
        raise RuntimeError(
            f"PostgreSQL did not accept connections within {self.start_timeout:.0f}s; "
            f"server log:\n{self.log_tail()}"
        )

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (optionally cloned from ``template``, which must
        have no open connections) and return its SQLAlchemy asyncpg URL."""
        for ident in (name, template):
            if ident is not None and not _DB_NAME_RE.match(ident):
                raise ValueError(f"invalid database name {ident!r}")
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {_quote_ident(template)}"
        if self._file_copy:
            # PostgreSQL 15's default, WAL_LOG, writes the whole template through the WAL:
            # for a small template a file copy is faster (~70 against ~115 ms here).
            sql += " STRATEGY FILE_COPY"
        self.psql(sql)
        return self.url_for(name)

    @contextlib.contextmanager
    def temporary_database(self, prefix: str = "t_") -> Iterator[str]:
        """A new database for one test, dropped afterwards (its connections closed by force):
        a suite creates a thousand, 10 MB each, which would otherwise stay on disk until the
        server stops, and make its stop (and the disk) slow."""
        name = prefix + uuid.uuid4().hex[:16]
        url = self.create_database(name)
        try:
            yield url
        finally:
            if self.port is not None:
                self.drop_database(name)

    def drop_database(self, name: str) -> None:
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def _kill_proc(self) -> None:
        """Stop the process we started (and only that PID): fast shutdown, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if self._via_runuser and self.data_dir is not None:
                # Our PID is runuser, not the postmaster: let pg_ctl signal the
                # postmaster recorded in postmaster.pid (immediate = SIGQUIT).
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self._run_server_tool(
                        [
                            self._bin("pg_ctl"),
                            "stop",
                            "-D",
                            str(self.data_dir),
                            "-m",
                            "immediate",
                            "-w",
                            "-t",
                            str(int(self.stop_timeout)),
                        ],
                        timeout=self.stop_timeout + 5,
                    )
            else:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGQUIT)  # postmaster: immediate shutdown
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self._proc = None
        self.pid = None

    def halt(self) -> None:
        """Stop the server process but keep its data and port, for :meth:`resume` (an outage).

        A fast shutdown: with ``synchronous_commit=off``, an immediate one could lose commits
        the clients were told about."""
        proc = self._proc
        if proc is not None and proc.poll() is None and not self._via_runuser:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)  # postmaster: fast shutdown
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_timeout)
        self._kill_proc()

    def resume(self) -> None:
        """Start the server again after :meth:`halt`, on the same port with the same data."""
        if not self._spawn_and_wait():
            raise RuntimeError(f"PostgreSQL failed to restart; server log:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (if started) and delete the temp dir. Idempotent."""
        atexit.unregister(self.stop)
        try:
            self._kill_proc()
        finally:
            if self.tmp_dir is not None:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)
                self.tmp_dir = None
            self.port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
