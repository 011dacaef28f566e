"""What receiving costs bigupload's local store: server CPU per GiB, server memory under eight
concurrent uploads, and bigupload's client against ``curl -T``, for two trees in one run.

Each tree (``--rev REV``, checked out in a temporary ``git worktree`` removed at the end, or
``--tree DIR``, a checkout; its ``src/`` goes first on ``PYTHONPATH``, server and client alike;
the first tree is the baseline) gets a ``bigupload serve`` on the local store (embedded defaults, no
rate limit, the job runner off: the processing job's own SHA-256 pass is not the store's
receiving). One random file (1 GiB by default) is made in a temporary directory under
``--tmp-dir`` and removed at the end, as is every store. Per round, trees alternating:

* ``curl -T FILE`` to a single-PUT ticket (``multipart: false``): its MB/s (curl's
  ``time_total``) and the server's CPU time over the PUT alone, per GiB;
* bigupload's client (``bench/upload_worker.py client``: 16 MiB parts, 8 at a time, each with
  its SHA-256): MB/s before the complete call (as ``upload_throughput.py`` counts it) and the
  server's CPU over the whole upload, complete (the join) included, per GiB, and the client
  process's own CPU per GiB (its rusage, start-up included);

then once per tree, on a fresh server, ``--concurrent`` (8) uploads at once, first by curl and
then by the client: the server's peak RSS (``VmHWM`` of the fresh process, and ``VmRSS``
sampled every 50 ms) and its CPU per GiB. CPU is user + system time from ``/proc/<pid>/stat``.

    .venv/bin/python bench/local_store_cpu.py --rev 7fb6aaf --rev HEAD   # 1 GiB, 3 rounds
    .venv/bin/python bench/local_store_cpu.py --quick --rev HEAD~1 --tree .  # 256 MiB, 1 round

Medians over rounds go to stdout as a markdown table, progress to stderr. Exit status 1 if an
upload failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servers import Server, cpu_seconds, log, server_env, start_bigupload_with_key, stop
from upload_throughput import (
    MB,
    WORKER,
    Api,
    GiB,
    MiB,
    make_file,
    run_child,
    terminate_as_exit,
)


@dataclass
class Tree:
    path: Path
    label: str

    @property
    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.path / "src")}


@dataclass
class Figures:
    curl_mb_s: list[float] = field(default_factory=list)
    curl_cpu_per_gib: list[float] = field(default_factory=list)
    client_mb_s: list[float] = field(default_factory=list)  # before the complete call
    client_complete_s: list[float] = field(default_factory=list)
    client_cpu_per_gib: list[float] = field(default_factory=list)  # the server's
    client_own_cpu_per_gib: list[float] = field(default_factory=list)  # the client process's
    concurrent: dict[str, dict[str, float]] = field(default_factory=dict)


class Failed(Exception):
    pass


def start_store(tree: Tree, workdir: Path) -> Server:
    settings = {
        "BIGUPLOAD_STORAGE": "local",
        "BIGUPLOAD_RATE_LIMIT": "off",
        "BIGUPLOAD_RUN_JOBS": "false",
        **tree.env,
    }
    return start_bigupload_with_key(workdir, f"bigupload-{tree.label}", settings)


def api_key(server: Server) -> str:
    return server.auth_headers["Authorization"].split()[1]


def curl_put(server: Server, api: Api, path: Path, workdir: Path) -> Callable[[], float]:
    """A single-PUT ticket for ``path``; answers the function that sends it (and completes)."""
    size = path.stat().st_size
    ticket = api.call(
        "POST",
        "/api/v1/uploads",
        json={
            "filename": path.name,
            "content_type": "application/octet-stream",
            "size": size,
            "multipart": False,
        },
    )
    headers = {k: v for k, v in ticket["headers"].items() if k.lower() != "content-length"}
    argv = [shutil.which("curl") or "curl", "-sS", "-o", os.devnull, "-H", "Expect:"]
    argv += ["-w", "%{http_code} %{time_total} %{size_upload}"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv += ["-T", str(path), ticket["url"]]
    logs = workdir / f"curl-{ticket['id']}"

    def send() -> float:
        child = run_child(argv, server_env(None), workdir, 600, logs)
        code, total, sent = child.stdout.split()
        if child.returncode != 0 or not code.startswith("2") or int(float(sent)) != size:
            raise Failed(child.failure(f"curl (HTTP {code}, {sent} of {size} bytes)"))
        api.call("POST", f"/api/v1/uploads/{ticket['id']}/complete")
        shutil.rmtree(logs, ignore_errors=True)
        return float(total)

    return send


def client_upload(
    tree: Tree, server: Server, path: Path, workdir: Path, args: argparse.Namespace, n: int
) -> tuple[float, float, float]:
    """bigupload's client: (seconds before the complete call, seconds of the complete call,
    the client process's CPU seconds, start-up included)."""
    home = workdir / f"client-{n}"
    home.mkdir(parents=True, exist_ok=True)
    env = server_env(None) | tree.env
    env |= {"HOME": str(home), "BIGUPLOAD_CACHE_DIR": str(home / "cache")}
    env |= {"BIGUPLOAD_URL": server.url, "BIGUPLOAD_API_KEY": api_key(server)}
    argv = [sys.executable, str(WORKER), "client", str(path)]
    argv += ["--part-size", str(args.part_size), "--concurrency", str(args.concurrency)]
    child = run_child(argv, env, home, 900, home / "logs")
    if child.returncode != 0:
        raise Failed(child.failure("upload_worker.py client"))
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    shutil.rmtree(home, ignore_errors=True)
    complete = float(answer.get("complete_s", 0.0))
    return float(answer["seconds"]) - complete, complete, child.cpu_s


def cpu(server: Server) -> float:
    value = cpu_seconds(server.proc.pid)
    if value is None:
        raise Failed(f"{server.name} is gone: see {server.stderr_path}")
    return value


def wipe(api: Api) -> None:
    problems = api.delete_all()
    if problems:
        raise Failed(f"cleanup: {problems}")
    os.sync()


def one_round(
    tree: Tree,
    server: Server,
    api: Api,
    path: Path,
    args: argparse.Namespace,
    figures: Figures,
    workdir: Path,
    n: int,
) -> None:
    gib = path.stat().st_size / GiB
    send = curl_put(server, api, path, workdir)
    before = cpu(server)
    seconds = send()
    figures.curl_cpu_per_gib.append((cpu(server) - before) / gib)
    figures.curl_mb_s.append(path.stat().st_size / seconds / MB)
    wipe(api)
    before = cpu(server)
    transfer, complete, own = client_upload(tree, server, path, workdir, args, n)
    figures.client_cpu_per_gib.append((cpu(server) - before) / gib)
    figures.client_own_cpu_per_gib.append(own / gib)
    figures.client_mb_s.append(path.stat().st_size / transfer / MB)
    figures.client_complete_s.append(complete)
    wipe(api)
    log(
        f"  {tree.label} round {n}: curl {figures.curl_mb_s[-1]:.0f} MB/s, "
        f"{figures.curl_cpu_per_gib[-1]:.2f} CPU s/GiB; client {figures.client_mb_s[-1]:.0f} "
        f"MB/s before complete ({complete:.2f} s complete), "
        f"{figures.client_cpu_per_gib[-1]:.2f} CPU s/GiB (the client's own: "
        f"{figures.client_own_cpu_per_gib[-1]:.2f})"
    )


def rss_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def concurrent_uploads(
    tree: Tree, path: Path, args: argparse.Namespace, workdir: Path, method: str
) -> dict[str, float]:
    """``--concurrent`` uploads at once to a fresh server: its peak RSS and CPU per GiB."""
    server = start_store(tree, workdir / f"{tree.label}-{method}")
    api = Api(server)
    try:
        sends: list[Callable[[], object]]
        if method == "curl":
            sends = [curl_put(server, api, path, workdir) for _ in range(args.concurrent)]
        else:
            sends = [
                (lambda n=n: client_upload(tree, server, path, workdir, args, 100 + n))
                for n in range(args.concurrent)
            ]
        idle_rss = rss_kib(server.proc.pid, "VmRSS")
        before = cpu(server)
        peak = 0
        done = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(args.concurrent) as pool:
            futures = [pool.submit(send) for send in sends]
            pool.submit(lambda: [f.result() for f in futures]).add_done_callback(
                lambda _: done.set()
            )
            while not done.wait(0.05):
                peak = max(peak, rss_kib(server.proc.pid, "VmRSS"))
            for future in futures:
                future.result()
        used = cpu(server) - before
        hwm = rss_kib(server.proc.pid, "VmHWM")
        wipe(api)
        gib = args.concurrent * path.stat().st_size / GiB
        figures = {
            "idle_rss_mib": idle_rss / 1024,
            "peak_rss_mib": max(peak, hwm) / 1024,
            "sampled_rss_mib": peak / 1024,
            "cpu_per_gib": used / gib,
        }
        log(f"  {tree.label} {args.concurrent} x {method}: {figures}")
        return figures
    finally:
        api.close()
        stop(server.proc, server.name)


@contextlib.contextmanager
def worktrees(revs: Sequence[str], tmp: Path) -> Iterator[list[Tree]]:
    """Each of ``revs`` checked out in a temporary ``git worktree``, removed afterwards."""
    here = Path(__file__).resolve().parent.parent
    made: list[Tree] = []
    try:
        for n, rev in enumerate(revs):
            where = tmp / f"tree-{n}"
            subprocess.run(
                ["git", "-C", str(here), "worktree", "add", "--detach", str(where), rev],
                check=True,
                capture_output=True,
            )
            made.append(Tree(where, rev))
        yield made
    finally:
        for tree in made:
            subprocess.run(
                ["git", "-C", str(here), "worktree", "remove", "--force", str(tree.path)],
                check=False,
                capture_output=True,
            )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], digits: int = 0) -> str:
    if not values:
        return "-"
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def render(trees: Sequence[Tree], results: dict[str, Figures], args: argparse.Namespace) -> str:
    lines = [
        f"{args.size / GiB:g} GiB file, {args.rounds} round(s), medians (min-max)",
        "",
        "| tree | curl -T MB/s | server CPU s/GiB, curl | client MB/s before complete "
        "| client / curl | complete s | server CPU s/GiB, client | client's own CPU s/GiB "
        f"| {args.concurrent} x curl: peak RSS MiB, CPU s/GiB "
        f"| {args.concurrent} x client: peak RSS MiB, CPU s/GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tree in trees:
        f = results[tree.label]
        ratio = median(f.client_mb_s) / median(f.curl_mb_s)
        conc = [f.concurrent.get(m, {}) for m in ("curl", "client")]
        shown = [f"{c['peak_rss_mib']:.0f}, {c['cpu_per_gib']:.2f}" if c else "-" for c in conc]
        lines.append(
            f"| {tree.label} | {spread(f.curl_mb_s)} | {spread(f.curl_cpu_per_gib, 2)} "
            f"| {spread(f.client_mb_s)} | {ratio:.2f} | {spread(f.client_complete_s, 2)} "
            f"| {spread(f.client_cpu_per_gib, 2)} | {spread(f.client_own_cpu_per_gib, 2)} "
            f"| {shown[0]} | {shown[1]} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, help="a checkout (repeatable)")
    parser.add_argument(
        "--rev",
        action="append",
        default=[],
        help="a revision, checked out for the run in a temporary git worktree (repeatable; "
        "the first is the baseline)",
    )
    parser.add_argument("--size", type=int, default=GiB, help="bytes of the file [1 GiB]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--part-size", type=int, default=16 * MiB)
    parser.add_argument("--concurrency", type=int, default=8, help="the client's parts at once")
    parser.add_argument("--tmp-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--quick", action="store_true", help="256 MiB, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.rounds = 256 * MiB, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-local-store-", dir=args.tmp_dir))
    servers: list[Server] = []
    try:
        with worktrees(args.rev, workdir) as checked_out, terminate_as_exit():
            here = Path(__file__).resolve().parent.parent
            given = args.tree or ([] if checked_out else [here])
            trees = checked_out + [Tree(t.resolve(), t.resolve().name) for t in given]
            path = workdir / "upload.bin"
            log(f"making {args.size / MiB:.0f} MiB of random bytes in {path}")
            make_file(path, args.size)
            results = {tree.label: Figures() for tree in trees}
            stores = {}
            for tree in trees:
                server = start_store(tree, workdir / tree.label)
                servers.append(server)
                stores[tree.label] = (server, Api(server))
            for n in range(1, args.rounds + 1):
                order = trees if n % 2 else list(reversed(trees))
                for tree in order:
                    server, api = stores[tree.label]
                    one_round(tree, server, api, path, args, results[tree.label], workdir, n)
            for server in servers:
                stop(server.proc, server.name)
            servers.clear()
            if args.concurrent:
                for method in ("curl", "client"):
                    for tree in trees:
                        results[tree.label].concurrent[method] = concurrent_uploads(
                            tree, path, args, workdir, method
                        )
            print(render(trees, results, args))
    except Failed as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        for server in servers:
            stop(server.proc, server.name)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
