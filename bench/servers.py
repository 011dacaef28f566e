"""The server processes of the benchmarks in ``bench/``: start, wait for, measure and stop by PID.

* ``start_bigupload``: ``bigupload serve --port P`` on the embedded defaults (SQLite registry +
  local disk store) in a data directory under the given work directory, with every other
  ``BIGUPLOAD_*``/``AWS_*`` variable removed; the admin key is read from its stderr;
* ``start_baseline``: ``bench/baseline_app.py``, the bare presigned-URL service;
* ``start_bigupload_with_key``: ``bigupload serve`` on a configuration given as environment
  variables (an S3 store, say), with an API key made first by ``bigupload keys create``;
* ``start_companion``: Uppy Companion (``bench/companion/server.mjs`` under ``node``);
* ``start_nanio``: the on-disk S3 server ``nanio serve`` (``pip install nanio``).

Both servers' stdout and stderr go to a file in the work directory (``Server.stderr_path``).
``stop`` terminates by PID (SIGTERM, a bounded wait, then SIGKILL). ``cpu_seconds`` reads the
user + system CPU time of a process and of all its descendants (the worker processes of
``--workers N``) from ``/proc``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"

_ADMIN_KEY_RE = re.compile(r"shown only once:\s*\n\s*(bu_[A-Za-z0-9_-]+)")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    stderr_path: Path
    #: What a client must send to be let in (bigupload: the admin key as a bearer token).
    auth_headers: dict[str, str] = field(default_factory=dict)
    #: Where the server keeps its data, when the benchmark gave it a directory.
    data_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server and its worker processes, from /proc."""
        return cpu_seconds(self.proc.pid)


# --------------------------------------------------------------------------------------------
# CPU accounting from /proc
# --------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after "pid (comm)": field 3 (state) is index 0."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def _children_from_task_files(pid: int) -> list[int] | None:
    """The children of ``pid`` from ``/proc/<pid>/task/*/children``; None without that file."""
    found = False
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            text = (task / "children").read_text()
        except FileNotFoundError:
            continue
        except OSError:  # the thread or process is gone
            found = True
            continue
        found = True
        children.extend(int(child) for child in text.split())
    return children if found else None


def _parent_map() -> dict[int, list[int]]:
    """Parent PID -> children PIDs, from one scan of ``/proc/<pid>/stat``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:  # field 4 (ppid) is index 1
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, grandchildren, ...), without ``pid`` itself.

    Reads ``/proc/<pid>/task/*/children`` where the kernel has it (CONFIG_PROC_CHILDREN), and
    otherwise the parent PID of every process in ``/proc``.
    """
    parent_map: dict[int, list[int]] | None = None
    found: list[int] = []
    pending = [pid]
    seen = {pid}
    while pending:
        current = pending.pop()
        children = _children_from_task_files(current)
        if children is None:
            if parent_map is None:
                parent_map = _parent_map()
            children = parent_map.get(current, [])
        for child in children:
            if child not in seen:
                seen.add(child)
                found.append(child)
                pending.append(child)
    return found


def cpu_seconds(pid: int, *, reaped: bool = False) -> float | None:
    """User + system CPU time (all threads) of ``pid`` and its live descendants, from /proc.

    None if ``pid`` itself is gone. A descendant that exits between the listing and the read
    is left out. With ``reaped``, the CPU time of the children ``pid`` has waited for is added
    (``cutime``, ``cstime``): for a server that forks short-lived children (PostgreSQL's
    backends and autovacuum workers), whose time would otherwise vanish when they exit.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # utime (field 14) and stime (field 15) are indices 11 and 12, in clock ticks; cutime and
    # cstime (fields 16 and 17) indices 13 and 14.
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    for child in descendants(pid):
        child_fields = _stat_fields(child)
        if child_fields is not None:
            ticks += int(child_fields[11]) + int(child_fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def server_env(data_dir: Path | None, rate_limit: str | None = None) -> dict[str, str]:
    """The caller's environment without any BIGUPLOAD_/AWS_ setting: embedded defaults only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIGUPLOAD_", "AWS_"))}
    if data_dir is not None:
        env["BIGUPLOAD_DATA_DIR"] = str(data_dir)
    if rate_limit is not None:
        env["BIGUPLOAD_RATE_LIMIT"] = rate_limit
    return env


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def spawn(
    argv: Sequence[str], env: dict[str, str], cwd: Path, stderr_path: Path
) -> subprocess.Popen[bytes]:
    """Start a server; its stdout and stderr go to a file (a pipe could fill up and block it)."""
    with stderr_path.open("wb") as stderr:
        return subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
        )


def read_admin_key(stderr_path: Path) -> str | None:
    """The admin key ``bigupload serve`` prints once at its first start, if it is out yet."""
    match = _ADMIN_KEY_RE.search(stderr_path.read_text(errors="replace"))
    return match.group(1) if match else None


def wait_ready(
    proc: subprocess.Popen[bytes],
    name: str,
    port: int,
    stderr_path: Path,
    *,
    want_key: bool,
    timeout: float = 60.0,
) -> str | None:
    """Wait (bounded) until the port accepts connections and, if asked, the admin key is out."""
    deadline = time.monotonic() + timeout
    key: str | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with status {proc.returncode} while starting:\n" + tail(stderr_path)
            )
        if want_key and key is None:
            key = read_admin_key(stderr_path)
        if (key is not None or not want_key) and port_open(port):
            return key
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not become ready in {timeout:.0f} s:\n" + tail(stderr_path))


def launch(
    name: str,
    argv: Sequence[str],
    env: dict[str, str],
    workdir: Path,
    port: int,
    *,
    want_key: bool = False,
) -> tuple[subprocess.Popen[bytes], str | None, Path]:
    """Spawn a server (its output in ``workdir/<name>.stderr.log``) and wait until it is ready;
    stopped again if it never is. The process, the admin key if asked for, the log's path."""
    stderr_path = workdir / f"{name}.stderr.log"
    proc = spawn(argv, env, workdir, stderr_path)
    try:
        key = wait_ready(proc, name, port, stderr_path, want_key=want_key)
    except BaseException:
        stop(proc, name)
        raise
    return proc, key, stderr_path


def stop(proc: subprocess.Popen[bytes], name: str, grace: float = 10.0) -> None:
    """Terminate by PID, wait a bounded time, then kill."""
    if proc.poll() is not None:
        log(f"{name} (pid {proc.pid}) had already exited with status {proc.returncode}")
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) ignored SIGTERM for {grace:.0f} s: killing it")
        proc.kill()
        proc.wait(timeout=5)


def bigupload_command() -> str:
    """The ``bigupload`` command of this environment (beside this interpreter), else on PATH."""
    exe = Path(sys.executable).parent / "bigupload"
    command = str(exe) if exe.exists() else shutil.which("bigupload")
    if command is None:
        raise RuntimeError("the `bigupload` command is not installed in this environment")
    return command


def start_bigupload(
    workdir: Path,
    rate_limit: str | None,
    workers: int = 1,
    *,
    name: str = "bigupload",
    settings: dict[str, str] | None = None,
    profile: Path | None = None,
) -> Server:
    """``bigupload serve`` on the embedded defaults plus ``settings`` (``BIGUPLOAD_*``
    variables, such as a PostgreSQL ``BIGUPLOAD_DATABASE_URL``), its data under
    ``workdir/<name>-data``; the admin key of its first start is read from its stderr.

    With ``profile``, the server runs under cProfile (``bench/profiled_serve.py``), which
    writes its statistics to that file when ``stop`` ends it."""
    command = [bigupload_command()]
    if profile is not None:
        command = [sys.executable, str(BENCH_DIR / "profiled_serve.py"), str(profile)]
    port = free_port()
    data_dir = workdir / f"{name}-data"
    proc, key, stderr_path = launch(
        name,
        [*command, "serve", "--port", str(port), "--workers", str(workers)],
        server_env(data_dir, rate_limit) | (settings or {}),
        workdir,
        port,
        want_key=True,
    )
    return Server(
        name, port, proc, stderr_path, {"Authorization": f"Bearer {key}"}, data_dir=data_dir
    )


def start_baseline(workdir: Path, workers: int = 1) -> Server:
    port = free_port()
    proc, _, stderr_path = launch(
        "baseline",
        [
            sys.executable,
            str(BENCH_DIR / "baseline_app.py"),
            *("--host", HOST, "--port", str(port), "--workers", str(workers)),
        ],
        server_env(None),
        workdir,
        port,
    )
    return Server("baseline", port, proc, stderr_path)


COMPANION_DIR = BENCH_DIR / "companion"
INSTALL_COMPANION = BENCH_DIR.parent / "scripts" / "install-companion.sh"


def start_companion(workdir: Path, install_timeout: float = 600.0) -> Server:
    """Uppy Companion (``bench/companion/server.mjs``: ``companion.app(options)`` with fake S3
    credentials and a loopback endpoint) under ``node``; installs the pinned version with
    ``scripts/install-companion.sh`` first if it is not there yet."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the companion target needs `node` (and npm) on PATH")
    if not (COMPANION_DIR / "node_modules" / "@uppy" / "companion" / "package.json").exists():
        log("installing Uppy Companion (scripts/install-companion.sh)")
        subprocess.run(
            [str(INSTALL_COMPANION)],
            stdin=subprocess.DEVNULL,
            timeout=install_timeout,
            check=True,
        )
    port = free_port()
    data_dir = workdir / "companion-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = server_env(None) | {"NODE_ENV": "production"}
    argv = [node, str(COMPANION_DIR / "server.mjs"), "--host", HOST, "--port", str(port)]
    proc, _, stderr_path = launch(
        "companion", [*argv, "--data-dir", str(data_dir)], env, workdir, port
    )
    return Server("companion", port, proc, stderr_path, data_dir=data_dir)


def create_api_key(env: dict[str, str], cwd: Path, name: str, timeout: float = 60.0) -> str:
    """``bigupload db upgrade`` (admin commands refuse to make a registry), then ``bigupload
    keys create NAME`` (it prints the key alone on stdout); bounded."""
    made = subprocess.run(
        [bigupload_command(), "db", "upgrade"],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if made.returncode != 0:
        raise RuntimeError(
            "`bigupload db upgrade` failed: " + made.stderr.decode(errors="replace")[-2000:]
        )
    done = subprocess.run(
        [bigupload_command(), "keys", "create", name],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    key = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or not key or len(key.split()) != 1:
        raise RuntimeError(
            f"`bigupload keys create {name}` failed with status {done.returncode}: "
            + done.stderr.decode(errors="replace").strip()[-2000:]
        )
    return key


def start_bigupload_with_key(
    workdir: Path, name: str, settings: dict[str, str], key_name: str = "bench"
) -> Server:
    """``bigupload serve`` with ``settings`` (``BIGUPLOAD_*``/``AWS_*`` variables) on top of the
    embedded defaults, its data under ``workdir/data``, and an API key made beforehand with
    ``bigupload keys create`` on the same registry (so no admin key is made or printed)."""
    command = bigupload_command()
    port = free_port()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = server_env(data_dir) | settings
    key = create_api_key(env, workdir, key_name)
    proc, _, stderr_path = launch(name, [command, "serve", "--port", str(port)], env, workdir, port)
    return Server(
        name, port, proc, stderr_path, {"Authorization": f"Bearer {key}"}, data_dir=data_dir
    )


def start_nanio(workdir: Path, access_key: str, secret_key: str) -> Server:
    """``nanio serve`` on a free loopback port, its objects under ``workdir/data``."""
    exe = Path(sys.executable).parent / "nanio"
    command = str(exe) if exe.exists() else shutil.which("nanio")
    if command is None:
        raise RuntimeError("the `nanio` command is not installed here: `pip install nanio`")
    port = free_port()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = server_env(None) | {"NANIO_ACCESS_KEY": access_key, "NANIO_SECRET_KEY": secret_key}
    env = {
        k: v
        for k, v in env.items()
        if not k.startswith("NANIO_") or k in ("NANIO_ACCESS_KEY", "NANIO_SECRET_KEY")
    }
    argv = [command, "serve", "--data-dir", str(data_dir), "--host", HOST, "--port", str(port)]
    argv += ["--log-level", "warning", "--no-access-log"]
    proc, _, stderr_path = launch("nanio", argv, env, workdir, port)
    return Server("nanio", port, proc, stderr_path, data_dir=data_dir)
