"""Benchmark uploading one large file: bigupload's client against boto3 and a raw PUT.

One random file (1 GiB by default, made once in a temporary directory and deleted at the end)
is uploaded, in one run, by:

* (a) bigupload's Python client through presigned parts, ``Client(url, key, concurrency=8,
  part_size=16 MiB).upload(path)`` (in a child process, ``bench/upload_worker.py``), also with
  concurrency 1 (one stream), and the same through the command line, ``bigupload upload FILE
  --url URL`` (the key in ``BIGUPLOAD_API_KEY``); every uploader's peak RSS and CPU time are
  read from its own rusage (``wait4``);
* (b) boto3's own ``upload_file`` (s3transfer), with the default ``TransferConfig`` and with
  the part size and concurrency of (a);
* (c) ``curl -T FILE``: one single-stream PUT to a presigned URL,

against two stores: **nanio**, an on-disk S3 server (``nanio serve``), behind a bigupload
server configured for it (``BIGUPLOAD_STORAGE=s3``), and bigupload's **local** adapter (the
bytes go to bigupload's own ``/store`` endpoints), where (b) does not apply (no S3 API).
Every server is a subprocess on a free loopback port with its own temporary data directory; the
API keys are made with ``bigupload keys create``. Between runs the uploaded objects are deleted
(disk use stays bounded) and dirty pages are flushed (``sync``); the order of the methods is
rotated from one round to the next, and the order of the stores alternates.

It also measures the server-side cost of signing 10,000 part URLs (a 5 TiB object): in-process
through the storage port (``presign_parts``, with and without per-part SHA-256) on both
adapters, and over HTTP (``POST /api/v1/uploads/{id}/parts``, 1,000 parts per request) from the
bigupload server's CPU time in ``/proc``.

    .venv/bin/python bench/upload_throughput.py            # 1 GiB, 3 rounds: several minutes
    .venv/bin/python bench/upload_throughput.py --quick    # 256 MiB, 1 round
    .venv/bin/python bench/upload_throughput.py --size 4GiB --rounds 5 --stores nanio

The markdown table goes to stdout, progress to stderr, every run to
``bench/results/upload_throughput.json``. The exit status is 1 if a measured upload failed and
0 otherwise; a missed target does not change it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

# Sibling module: run as ``python bench/upload_throughput.py``, this directory is on sys.path.
from servers import (
    BENCH_DIR,
    Server,
    bigupload_command,
    cpu_seconds,
    log,
    server_env,
    start_bigupload_with_key,
    start_nanio,
    stop,
    tail,
)

DEFAULT_OUTPUT = BENCH_DIR / "results" / "upload_throughput.json"
WORKER = BENCH_DIR / "upload_worker.py"

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
MB = 1_000_000  # throughput is in MB/s, 10^6 bytes per second

#: nanio's credentials and bucket: throwaway values, on loopback only.
NANIO_ACCESS_KEY = "benchaccesskey"
NANIO_SECRET_KEY = "bench-secret-key-for-loopback-only"
BUCKET = "bench"
REGION = "us-east-1"

#: What a registry status must be once an upload is really in the store.
LANDED = {"uploaded", "processing", "completed"}

#: The targets (design.md "Targets", and the issue).
TARGET_VS_CURL = 0.8
TARGET_RSS_BASE = 100 * MiB
TARGET_SIGNING_CPU_S = 0.25
DESIGN_SIGNING_CPU_S = 1.0
SIGNING_PARTS = 10_000
SIGNING_OBJECT = 5 * TiB
SIGNING_BATCH = 1000

#: Free disk required before the file is made, as a multiple of its size.
FREE_FACTOR = 4


@dataclass(frozen=True)
class Method:
    id: str
    label: str  # (a), (b) and (c) are the names
    s3_only: bool = False


METHODS = [
    Method("client", "(a) bigupload Client.upload (Python)"),
    Method("client-1", "(a) Client.upload, concurrency 1 (one stream)"),
    Method("cli", "(a) `bigupload upload` (CLI)"),
    Method("boto3-default", "(b) boto3 upload_file, default TransferConfig", s3_only=True),
    Method("boto3-tuned", "(b) boto3 upload_file, same parts as (a)", s3_only=True),
    Method("curl", "(c) curl -T, one presigned PUT"),
]
BY_ID = {m.id: m for m in METHODS}

STORE_LABELS = {
    "nanio": "nanio (on-disk S3) behind bigupload (BIGUPLOAD_STORAGE=s3)",
    "local": "bigupload local adapter (BIGUPLOAD_STORAGE=local, bytes via /store)",
}


# --------------------------------------------------------------------------------------------
# Child processes, reaped with wait4 (their own rusage), always bounded
# --------------------------------------------------------------------------------------------


@dataclass
class Child:
    argv: list[str]
    returncode: int
    wall_s: float  # from the fork to the reap (by the launcher)
    cpu_s: float  # user + system, from the child's rusage
    maxrss_bytes: int  # peak resident set, from the child's rusage
    stdout: str
    stderr: str

    def failure(self, what: str) -> str:
        return f"{what} exited with status {self.returncode}: " + (
            self.stderr.strip()[-1500:] or self.stdout.strip()[-1500:] or "(no output)"
        )


#: The launcher of every measured child: ``python -S -I -c LAUNCHER REPORT ARGV...`` forks,
#: execs ARGV, reaps it with ``wait4`` and writes its exit code, wall time (fork to reap) and
#: rusage to REPORT. Linux carries the peak RSS of the address space a process execs away from
#: into its ``ru_maxrss``, so a child forked from this benchmark (80+ MiB once boto3 is loaded)
#: would report at least that much, even curl; forked from this small launcher, the floor is
#: the launcher's own few MiB.
LAUNCHER = """
import os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
ended = time.perf_counter()
with open(report, "w") as handle:
    handle.write(
        f"{os.waitstatus_to_exitcode(status)} {ended - started!r} "
        f"{usage.ru_utime!r} {usage.ru_stime!r} {usage.ru_maxrss}"
    )
"""


def run_child(
    argv: Sequence[str], env: dict[str, str], cwd: Path, timeout: float, logs: Path
) -> Child:
    """Run ``argv`` through :data:`LAUNCHER` and answer its exit code, time and rusage.

    The launcher leads a new process group, so that past ``timeout`` (``TimeoutError``), on
    Ctrl-C or on SIGTERM the launcher and the measured process are killed together, by that
    group's id, which is the launcher's PID.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path, report = logs / "stdout.log", logs / "stderr.log", logs / "rusage.txt"
    report.unlink(missing_ok=True)
    launcher = [sys.executable, "-S", "-I", "-c", LAUNCHER, str(report), *argv]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            launcher,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{Path(argv[0]).name} did not finish within {timeout:.0f} s") from None
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    stderr = err_path.read_text(errors="replace")
    try:
        code, wall, utime, stime, maxrss = report.read_text().split()
    except (OSError, ValueError):
        raise RuntimeError(
            f"the launcher of {Path(argv[0]).name} failed ({proc.returncode}): {stderr[-1500:]}"
        ) from None
    return Child(
        argv=list(argv),
        returncode=int(code),
        wall_s=float(wall),
        cpu_s=float(utime) + float(stime),
        maxrss_bytes=int(maxrss) * KiB,  # Linux: KiB
        stdout=out_path.read_text(errors="replace"),
        stderr=stderr,
    )


# --------------------------------------------------------------------------------------------
# The stores, and what the benchmark asks of them
# --------------------------------------------------------------------------------------------


class Api:
    """The bigupload API of one server, with its key (for the benchmark's own bookkeeping)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=server.url, headers=server.auth_headers, timeout=httpx.Timeout(60.0)
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(
                f"{method} {path} answered {response.status_code}: {response.text[:500]}"
            )
        return response.json() if response.content else None

    def files(self) -> list[dict[str, Any]]:
        """Every file of the key's owner, newest first (all pages)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(1000):  # bounded
            params: dict[str, Any] = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = self.call("GET", "/api/v1/files", params=params)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items

    def delete_all(self) -> list[str]:
        """Abort what is in progress and delete every file; answer what could not be."""
        problems = []
        for item in self.files():
            file_id = item["id"]
            if item.get("status") == "pending":
                with contextlib.suppress(RuntimeError):  # a single PUT has nothing to abort
                    self.call("DELETE", f"/api/v1/uploads/{file_id}")
            try:
                self.call("DELETE", f"/api/v1/files/{file_id}")
            except RuntimeError as exc:
                problems.append(str(exc))
        return problems

    def close(self) -> None:
        self.http.close()


@dataclass
class Store:
    name: str  # "nanio" or "local"
    bigupload: Server
    api: Api
    nanio: Server | None = None
    s3: Any = None  # an admin boto3 client of nanio

    @property
    def servers(self) -> list[Server]:
        return [self.bigupload] + ([self.nanio] if self.nanio else [])

    def wipe(self) -> list[str]:
        """Delete every upload: the registry's files, and anything left in the bucket."""
        problems = self.api.delete_all()
        if self.s3 is not None:
            for _ in range(100):  # bounded
                page = self.s3.list_multipart_uploads(Bucket=BUCKET)
                for upload in page.get("Uploads", []):
                    self.s3.abort_multipart_upload(
                        Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                listing = self.s3.list_objects_v2(Bucket=BUCKET)
                for obj in listing.get("Contents", []):
                    self.s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
                if not page.get("Uploads") and not listing.get("Contents"):
                    break
        return problems

    def disk_bytes(self) -> int:
        return sum(disk_usage(s.data_dir) for s in self.servers if s.data_dir is not None)


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` (like ``du``)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def s3_admin_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=NANIO_ACCESS_KEY,
        aws_secret_access_key=NANIO_SECRET_KEY,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def nanio_honours_if_none_match(s3: Any) -> bool:
    """Whether nanio refuses a second PUT of a key with ``If-None-Match: *`` (S3 does, 412)."""
    from botocore.exceptions import ClientError

    key = f"probe/{uuid.uuid4()}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"1")
    try:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"2", IfNoneMatch="*")
    except ClientError as exc:
        return exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")
    finally:
        s3.delete_object(Bucket=BUCKET, Key=key)
    return False


def start_nanio_store(workdir: Path, notes: list[str]) -> Store:
    nanio = start_nanio(workdir / "nanio", NANIO_ACCESS_KEY, NANIO_SECRET_KEY)
    try:
        s3 = s3_admin_client(nanio.url)
        s3.create_bucket(Bucket=BUCKET)
        conditional = nanio_honours_if_none_match(s3)
        notes.append(
            "nanio "
            + ("honours" if conditional else "ignores")
            + " `If-None-Match: *` (a second PUT of the same key "
            + ("is refused" if conditional else "replaces the object")
            + f"): BIGUPLOAD_S3_CONDITIONAL_WRITES={str(conditional).lower()}."
        )
        settings = {
            "BIGUPLOAD_STORAGE": "s3",
            "BIGUPLOAD_S3_ENDPOINT_URL": nanio.url,
            "BIGUPLOAD_S3_BUCKET": BUCKET,
            "BIGUPLOAD_S3_REGION": REGION,
            "BIGUPLOAD_S3_CONDITIONAL_WRITES": str(conditional).lower(),
            "BIGUPLOAD_RATE_LIMIT": "off",
            "AWS_ACCESS_KEY_ID": NANIO_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": NANIO_SECRET_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        server = start_bigupload_with_key(workdir / "bigupload-s3", "bigupload-s3", settings)
    except BaseException:
        stop(nanio.proc, "nanio")
        raise
    return Store("nanio", server, Api(server), nanio=nanio, s3=s3)


def start_local_store(workdir: Path) -> Store:
    settings = {"BIGUPLOAD_STORAGE": "local", "BIGUPLOAD_RATE_LIMIT": "off"}
    server = start_bigupload_with_key(workdir / "bigupload-local", "bigupload-local", settings)
    return Store("local", server, Api(server))


# --------------------------------------------------------------------------------------------
# One upload
# --------------------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    workdir: Path
    cli_flags: list[str]  # extra `bigupload upload` options this CLI takes (parts, concurrency)
    unavailable: dict[str, str]  # method id -> why it cannot be measured
    runs_made: int = 0


@dataclass
class RunResult:
    store: str
    method: str
    round: int  # 0: the warm-up
    position: int  # the method's place in this round's order, from 1
    ok: bool
    error: str | None
    bytes: int
    seconds: float | None  # the upload alone (see the method's notes)
    mb_s: float | None
    wall_s: float | None  # the child process, fork to reap
    client_cpu_s: float | None
    client_rss_mib: float | None
    bigupload_cpu_s: float | None
    nanio_cpu_s: float | None
    details: dict[str, Any] = field(default_factory=dict)


def client_env(ctx: Context, home: Path, extra: dict[str, str]) -> dict[str, str]:
    """A child's environment: no outside BIGUPLOAD_/AWS_ setting, a fresh home for any state a
    client keeps (resume records, caches), and ``extra``."""
    home.mkdir(parents=True, exist_ok=True)
    env = server_env(None)
    for name in ("HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        env[name] = str(home)
    env["BIGUPLOAD_CACHE_DIR"] = str(home / "bigupload-cache")  # the client's resume records
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env | extra


def upload_once(
    ctx: Context, store: Store, method: Method, path: Path, round_no: int, position: int
) -> RunResult:
    """One upload of ``path`` by ``method`` into ``store``: measured, checked, then deleted."""
    args = ctx.args
    size = path.stat().st_size
    ctx.runs_made += 1
    run_dir = ctx.workdir / "runs" / f"{ctx.runs_made:03d}-{store.name}-{method.id}"
    home = run_dir / "home"
    key = f"bench/{method.id}-{ctx.runs_made}"
    timeout = args.timeout or max(120.0, size / (5 * MB))
    api_env = {"BIGUPLOAD_URL": store.bigupload.url}
    api_env["BIGUPLOAD_API_KEY"] = store.bigupload.auth_headers["Authorization"].split()[1]
    s3_env = {
        "BENCH_S3_ENDPOINT": store.nanio.url if store.nanio else "",
        "BENCH_S3_BUCKET": BUCKET,
        "AWS_ACCESS_KEY_ID": NANIO_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": NANIO_SECRET_KEY,
    }
    concurrency = 1 if method.id == "client-1" else args.concurrency
    part_args = ["--part-size", str(args.part_size), "--concurrency", str(concurrency)]
    details: dict[str, Any] = {}
    file_id: str | None = None
    seconds: float | None = None
    error: str | None = None
    child: Child | None = None

    cpu_before = [cpu_seconds(s.proc.pid) for s in (store.bigupload, store.nanio) if s]
    try:
        if method.id in ("client", "client-1", "boto3-default", "boto3-tuned"):
            worker = "client" if method.id == "client-1" else method.id
            argv = [sys.executable, str(WORKER), worker, str(path), *part_args, "--key", key]
            is_client = worker == "client"
            env = client_env(ctx, home, api_env if is_client else s3_env)
            child = run_child(argv, env, run_dir, timeout, run_dir)
            if child.returncode != 0:
                raise RuntimeError(child.failure(f"upload_worker.py {method.id}"))
            answer = json.loads(child.stdout.strip().splitlines()[-1])
            seconds = float(answer.pop("seconds"))
            file_id = answer.get("file_id")
            details |= answer
        elif method.id == "cli":
            # The key goes in BIGUPLOAD_API_KEY (as --api-key it would show in process lists).
            argv = [bigupload_command(), "upload", str(path), "--url", store.bigupload.url]
            env = client_env(ctx, home, {"BIGUPLOAD_API_KEY": api_env["BIGUPLOAD_API_KEY"]})
            child = run_child([*argv, *ctx.cli_flags], env, run_dir, timeout, run_dir)
            if child.returncode != 0:
                raise RuntimeError(child.failure("bigupload upload"))
            seconds = child.wall_s  # the whole command, interpreter start-up included
        elif method.id == "curl":
            seconds, child, file_id = curl_upload(ctx, store, path, key, timeout, run_dir, home)
        else:
            raise AssertionError(method.id)
    except (RuntimeError, TimeoutError, OSError, ValueError, KeyError, httpx.HTTPError) as exc:
        error = str(exc)
    cpu_after = [cpu_seconds(s.proc.pid) for s in (store.bigupload, store.nanio) if s]
    deltas = [
        None if a is None or b is None else b - a
        for a, b in zip(cpu_before, cpu_after, strict=True)
    ]
    if error is None:
        error = check_landed(store, method, size, key, file_id)
    problems = store.wipe()
    if problems:
        log(f"  cleanup: {problems}")
    shutil.rmtree(home, ignore_errors=True)
    sync_started = time.perf_counter()
    os.sync()  # flush this run's writes (and deletions) before the next run starts
    details["sync_s"] = round(time.perf_counter() - sync_started, 3)
    details["store_disk_after_cleanup_mib"] = round(store.disk_bytes() / MiB, 1)
    if not args.keep_logs and error is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif error is not None:
        details["logs"] = str(run_dir)
    return RunResult(
        store=store.name,
        method=method.id,
        round=round_no,
        position=position,
        ok=error is None,
        error=error,
        bytes=size,
        seconds=seconds if error is None else None,
        mb_s=size / seconds / MB if error is None and seconds else None,
        wall_s=child.wall_s if child else None,
        client_cpu_s=child.cpu_s if child else None,
        client_rss_mib=child.maxrss_bytes / MiB if child else None,
        bigupload_cpu_s=deltas[0],
        nanio_cpu_s=deltas[1] if len(deltas) > 1 else None,
        details=details,
    )


def curl_upload(
    ctx: Context, store: Store, path: Path, key: str, timeout: float, run_dir: Path, home: Path
) -> tuple[float, Child, str | None]:
    """(c): one ``curl -T`` PUT to a presigned URL. Timed by curl itself (``time_total``).

    nanio: a presigned ``put_object`` from boto3. local: a single-PUT ticket from bigupload's
    API (``multipart: false``), its signed headers sent as given, and the upload completed
    afterwards (untimed) so that the registry checks it.
    """
    size = path.stat().st_size
    headers: dict[str, str] = {}
    file_id = None
    if store.name == "nanio":
        url = store.s3.generate_presigned_url(
            "put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600
        )
    else:
        ticket = store.api.call(
            "POST",
            "/api/v1/uploads",
            json={
                "filename": path.name,
                "content_type": "application/octet-stream",
                "size": size,
                "multipart": False,
            },
        )
        if ticket.get("method") != "PUT":
            raise RuntimeError(f"expected a single-PUT ticket, got {ticket.get('method')}")
        url, file_id = ticket["url"], ticket["id"]
        headers = {k: v for k, v in ticket["headers"].items() if k.lower() != "content-length"}
    argv = [shutil.which("curl") or "curl", "-sS", "-o", os.devnull]
    argv += ["-w", "%{http_code} %{time_total} %{size_upload}", "-H", "Expect:"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv += ["--max-time", str(int(timeout)), "-T", str(path), url]
    child = run_child(argv, client_env(ctx, home, {}), run_dir, timeout + 10, run_dir)
    if child.returncode != 0:
        raise RuntimeError(child.failure("curl"))
    code, total, sent = child.stdout.split()
    if not code.startswith("2") or int(float(sent)) != size:
        raise RuntimeError(f"curl: HTTP {code}, {sent} of {size} bytes sent")
    if file_id is not None:
        store.api.call("POST", f"/api/v1/uploads/{file_id}/complete")
    return float(total), child, file_id


def check_landed(
    store: Store, method: Method, size: int, key: str, file_id: str | None
) -> str | None:
    """None if the object is in the store, whole; else what is wrong."""
    try:
        via_api = method.id in ("client", "client-1", "cli")
        if via_api or (store.name == "local" and method.id == "curl"):
            files = store.api.files()
            record = next((f for f in files if f["id"] == file_id), None) if file_id else None
            record = record or (files[0] if files else None)
            if record is None:
                return "the registry has no file after the upload"
            stored = record.get("stored_size") or record.get("size")
            if record.get("status") not in LANDED or stored != size:
                return f"the file is {record.get('status')}, {stored} bytes (expected {size})"
        if store.s3 is not None:
            if method.s3_only or method.id == "curl":
                found = store.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
            else:
                listing = store.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
                found = max((obj["Size"] for obj in listing), default=None)
            if found != size:
                return f"the bucket holds {found} bytes, expected {size}"
    except Exception as exc:
        return f"could not check the upload: {type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------------------------
# What can be measured
# --------------------------------------------------------------------------------------------


def probe_methods(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, str], list[str]]:
    """Why each unavailable method cannot be measured, and the CLI's extra options."""
    unavailable: dict[str, str] = {}
    probe = subprocess.run(
        [sys.executable, "-c", "from bigupload.client import Client"],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=workdir,
    )
    if probe.returncode != 0:
        last = probe.stderr.decode(errors="replace").strip().splitlines()[-1:]
        unavailable["client"] = "`from bigupload.client import Client` fails: " + "".join(last)
    cli_flags: list[str] = []
    help_run = subprocess.run(
        [bigupload_command(), "upload", "--help"],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=workdir,
        env=server_env(None),
    )
    help_text = help_run.stdout.decode(errors="replace")
    if help_run.returncode != 0:
        text = re.sub(r"[\u2500-\u257f]", " ", help_run.stderr.decode(errors="replace"))
        text = " ".join(text.split())
        found = re.search(r"No such command '[^']*'", text)
        unavailable["cli"] = (
            "no `bigupload upload` command yet ("
            + (found.group(0) if found else text[-200:] or f"exit status {help_run.returncode}")
            + ")"
        )
    else:
        if "--part-size" in help_text:
            cli_flags += ["--part-size", str(args.part_size)]
        if "--concurrency" in help_text:
            cli_flags += ["--concurrency", str(args.concurrency)]
        for flag in ("--no-progress", "--quiet"):
            if flag in help_text:
                cli_flags.append(flag)
                break
    if shutil.which("curl") is None:
        unavailable["curl"] = "no `curl` on PATH"
    for name in args.skip:
        unavailable.setdefault(name, "skipped (--skip)")
    return unavailable, cli_flags


def cli_startup(ctx: Context) -> dict[str, float] | None:
    """What starting the CLI costs on its own: ``bigupload upload --help``, median of 3."""
    if "cli" in ctx.unavailable:
        return None
    runs = []
    for n in range(3):
        run_dir = ctx.workdir / "runs" / f"cli-help-{n}"
        child = run_child(
            [bigupload_command(), "upload", "--help"],
            client_env(ctx, run_dir / "home", {}),
            run_dir,
            120,
            run_dir,
        )
        shutil.rmtree(run_dir, ignore_errors=True)
        runs.append(child)
    return {
        "wall_s": statistics.median(c.wall_s for c in runs),
        "cpu_s": statistics.median(c.cpu_s for c in runs),
        "rss_mib": statistics.median(c.maxrss_bytes / MiB for c in runs),
    }


# --------------------------------------------------------------------------------------------
# Signing 10,000 part URLs
# --------------------------------------------------------------------------------------------


@dataclass
class SigningResult:
    adapter: str  # "s3" or "local"
    path: str  # "in-process" or "HTTP"
    checksums: bool
    round: int
    ok: bool
    error: str | None
    parts: int
    cpu_s: float | None  # as measured, for ``parts`` URLs
    wall_s: float | None
    cpu_s_per_10k: float | None  # scaled to 10,000 URLs


def signing_parts(with_checksums: bool) -> list[Any]:
    """The 10,000 parts of a 5 TiB object, each with a SHA-256 if asked."""
    from bigupload.storage.base import PartToSign

    part_size = -(-SIGNING_OBJECT // SIGNING_PARTS)
    parts = []
    for n in range(1, SIGNING_PARTS + 1):
        size = min(part_size, SIGNING_OBJECT - part_size * (n - 1))
        digest = hashlib.sha256(n.to_bytes(4, "big")).digest() if with_checksums else None
        parts.append(PartToSign(n, size, digest))
    return parts


def build_adapters(workdir: Path, stores: dict[str, Store]) -> dict[str, Any]:
    """The two adapters as bigupload builds them (an adapter that cannot be built: its error)."""
    adapters: dict[str, Any] = {}
    try:
        from bigupload.storage.s3 import S3Storage, build_client

        # build_client reads credentials from boto3's chain: this process's environment.
        os.environ["AWS_ACCESS_KEY_ID"] = NANIO_ACCESS_KEY
        os.environ["AWS_SECRET_ACCESS_KEY"] = NANIO_SECRET_KEY
        endpoint = stores["nanio"].nanio.url if "nanio" in stores else "http://127.0.0.1:9"
        adapters["s3"] = S3Storage(build_client(endpoint_url=endpoint, region=REGION), BUCKET)
    except Exception as exc:
        adapters["s3"] = f"cannot build the S3 adapter: {type(exc).__name__}: {exc}"
    try:
        from bigupload.storage.local import LocalStorage

        adapters["local"] = LocalStorage(
            workdir / "signing-local-store",
            public_url="http://127.0.0.1:8000",
            secret=uuid.uuid4().hex + uuid.uuid4().hex,
        )
    except Exception as exc:
        adapters["local"] = f"cannot build the local adapter: {type(exc).__name__}: {exc}"
    return adapters


def sign_in_process(adapter: Any, name: str, with_checksums: bool, round_no: int) -> SigningResult:
    """CPU time (``time.process_time``) of one ``presign_parts`` call for 10,000 parts."""
    key = f"uploads/bench/2026/01/{uuid.uuid4()}"
    parts = signing_parts(with_checksums)
    upload_id = None
    try:
        upload_id = asyncio.run(
            adapter.create_multipart(
                key, content_type="application/octet-stream", checksum_sha256=with_checksums
            )
        )
        adapter.presign_parts(key, upload_id, parts[:10], expires_in=900)  # warm caches
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        urls = adapter.presign_parts(key, upload_id, parts, expires_in=900)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        if len(urls) != len(parts):
            raise RuntimeError(f"{len(urls)} URLs for {len(parts)} parts")
        if with_checksums and not any("sha256" in h.lower() for h in urls[-1].headers):
            raise RuntimeError(f"no checksum header signed: {urls[-1].headers}")
    except Exception as exc:
        return SigningResult(
            name, "in-process", with_checksums, round_no, False,
            f"{type(exc).__name__}: {exc}", len(parts), None, None, None,
        )  # fmt: skip
    finally:
        if upload_id is not None:
            with contextlib.suppress(Exception):
                asyncio.run(adapter.abort_multipart(key, upload_id))
    cpu = cpu1 - cpu0
    return SigningResult(
        name, "in-process", with_checksums, round_no, True, None, len(parts),
        cpu, wall1 - wall0, cpu * SIGNING_PARTS / len(parts),
    )  # fmt: skip


def sign_over_http(store: Store, with_checksums: bool, round_no: int) -> SigningResult:
    """The bigupload server's CPU time (``/proc``) to sign every part of a 5 TiB upload,
    1,000 part numbers per ``POST /api/v1/uploads/{id}/parts``."""
    adapter = "s3" if store.name == "nanio" else "local"
    file_id = None
    parts = 0
    try:
        ticket = store.api.call(
            "POST",
            "/api/v1/uploads",
            json={
                "filename": "signing-5TiB.bin",
                "content_type": "application/octet-stream",
                "size": SIGNING_OBJECT,
                "multipart": True,
                "part_checksums": with_checksums,
            },
        )
        file_id, parts = ticket["id"], int(ticket["part_count"])
        bodies = []
        for first in range(1, parts + 1, SIGNING_BATCH):
            numbers = list(range(first, min(first + SIGNING_BATCH, parts + 1)))
            body: dict[str, Any] = {"part_numbers": numbers}
            if with_checksums:
                body["checksums_sha256"] = {
                    str(n): hashlib.sha256(n.to_bytes(4, "big")).hexdigest() for n in numbers
                }
            bodies.append(json.dumps(body).encode())
        path = f"/api/v1/uploads/{file_id}/parts"
        headers = {"Content-Type": "application/json"}
        store.api.call("POST", path, content=bodies[-1], headers=headers)  # warm up
        signed = 0
        cpu0, wall0 = cpu_seconds(store.bigupload.proc.pid), time.perf_counter()
        for body_bytes in bodies:
            signed += len(
                store.api.call("POST", path, content=body_bytes, headers=headers)["parts"]
            )
        cpu1, wall1 = cpu_seconds(store.bigupload.proc.pid), time.perf_counter()
        if signed != parts or cpu0 is None or cpu1 is None:
            raise RuntimeError(f"signed {signed} of {parts} parts")
    except (RuntimeError, KeyError, ValueError, httpx.HTTPError) as exc:
        return SigningResult(
            adapter, "HTTP", with_checksums, round_no, False, str(exc), parts, None, None, None
        )
    finally:
        if file_id is not None:
            with contextlib.suppress(RuntimeError, httpx.HTTPError):
                store.api.delete_all()
    cpu = cpu1 - cpu0
    return SigningResult(
        adapter, "HTTP", with_checksums, round_no, True, None, parts,
        cpu, wall1 - wall0, cpu * SIGNING_PARTS / parts,
    )  # fmt: skip


def measure_signing(
    args: argparse.Namespace, workdir: Path, stores: dict[str, Store]
) -> list[SigningResult]:
    adapters = build_adapters(workdir, stores)
    results: list[SigningResult] = []
    for round_no in range(1, args.rounds + 1):
        for name in ("s3", "local"):
            adapter = adapters[name]
            for with_checksums in (False, True) if round_no % 2 else (True, False):
                if isinstance(adapter, str):
                    result = SigningResult(
                        name, "in-process", with_checksums, round_no, False, adapter,
                        SIGNING_PARTS, None, None, None,
                    )  # fmt: skip
                else:
                    result = sign_in_process(adapter, name, with_checksums, round_no)
                results.append(result)
                log_signing(result)
        for store in stores.values():
            for with_checksums in (False, True):
                result = sign_over_http(store, with_checksums, round_no)
                results.append(result)
                log_signing(result)
    for adapter in adapters.values():
        if not isinstance(adapter, str):
            with contextlib.suppress(Exception):
                asyncio.run(adapter.close())
    return results


def log_signing(r: SigningResult) -> None:
    what = f"round {r.round} signing {r.adapter:5} {r.path:10} sha256={r.checksums!s:5}"
    if r.ok:
        log(f"{what}: {r.cpu_s_per_10k:.3f} s CPU per 10,000 URLs ({r.parts} signed)")
    else:
        log(f"{what}: NOT MEASURED: {r.error}")


# --------------------------------------------------------------------------------------------
# Summary and report
# --------------------------------------------------------------------------------------------


@dataclass
class Summary:
    store: str
    method: str
    rounds: int
    failed: int
    mb_s: float | None
    mb_s_min: float | None
    mb_s_max: float | None
    seconds: float | None
    complete_s: float | None  # of ``seconds``: the final complete call
    mb_s_before_complete: float | None  # the parts alone: size / (seconds - complete_s)
    client_cpu_s: float | None
    client_rss_mib: float | None  # median
    client_rss_mib_max: float | None
    bigupload_cpu_s: float | None
    nanio_cpu_s: float | None
    note: str | None = None  # why it was not measured


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(runs: Sequence[RunResult], store: str, method: str, note: str | None) -> Summary:
    mine = [r for r in runs if r.store == store and r.method == method and r.round > 0]
    good = [r for r in mine if r.ok]
    speeds = [r.mb_s for r in good if r.mb_s is not None]
    rss = [r.client_rss_mib for r in good if r.client_rss_mib is not None]
    return Summary(
        store=store,
        method=method,
        rounds=len(good),
        failed=len(mine) - len(good),
        mb_s=statistics.median(speeds) if speeds else None,
        mb_s_min=min(speeds) if speeds else None,
        mb_s_max=max(speeds) if speeds else None,
        seconds=_median([r.seconds for r in good]),
        complete_s=_median([r.details.get("complete_s") for r in good]),
        mb_s_before_complete=_median([before_complete(r) for r in good]),
        client_cpu_s=_median([r.client_cpu_s for r in good]),
        client_rss_mib=statistics.median(rss) if rss else None,
        client_rss_mib_max=max(rss) if rss else None,
        bigupload_cpu_s=_median([r.bigupload_cpu_s for r in good]),
        nanio_cpu_s=_median([r.nanio_cpu_s for r in good]),
        note=note,
    )


def before_complete(run: RunResult) -> float | None:
    """MB/s of the transfer alone, without the final complete call (curl has none)."""
    if run.seconds is None:
        return None
    if run.method == "curl":
        return run.mb_s
    complete = run.details.get("complete_s")
    if complete is None or run.seconds <= complete:
        return None
    return run.bytes / (run.seconds - complete) / MB


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def paired_ratios(runs: Sequence[RunResult], store: str, top: str, bottom: str) -> list[float]:
    """``top``/``bottom`` MB/s within each round (both measured in the same round)."""
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        if r.store == store and r.round > 0 and r.ok and r.mb_s:
            by_round.setdefault(r.round, {})[r.method] = r.mb_s
    return [m[top] / m[bottom] for m in by_round.values() if top in m and bottom in m]


RATIOS = [
    ("client", "boto3-default", "(a)/(b default)"),
    ("client", "boto3-tuned", "(a)/(b same parts)"),
    ("client", "curl", "(a)/(c)"),
    ("client-1", "curl", "(a one stream)/(c)"),
    ("boto3-default", "curl", "(b default)/(c)"),
    ("cli", "boto3-default", "(a CLI)/(b default)"),
    ("cli", "curl", "(a CLI)/(c)"),
]


def compute_ratios(
    runs: Sequence[RunResult], by_key: dict[tuple[str, str], Summary], stores: Sequence[str]
) -> list[dict[str, Any]]:
    out = []
    for store in stores:
        for top, bottom, label in RATIOS:
            a, b = by_key.get((store, top)), by_key.get((store, bottom))
            if a is None or b is None or a.mb_s is None or b.mb_s is None:
                value = None
            else:
                value = a.mb_s / b.mb_s
            if store == "local" and (BY_ID[top].s3_only or BY_ID[bottom].s3_only):
                continue  # (b) has no S3 API to talk to
            paired = paired_ratios(runs, store, top, bottom)
            out.append(
                {
                    "store": store,
                    "ratio": label,
                    "top": top,
                    "bottom": bottom,
                    "value": value,
                    "paired_min": min(paired) if paired else None,
                    "paired_max": max(paired) if paired else None,
                }
            )
    return out


def evaluate_targets(
    by_key: dict[tuple[str, str], Summary],
    signing: Sequence[SigningResult],
    stores: Sequence[str],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(text: str, passed: bool | None, measured: str) -> None:
        verdict = "NOT MEASURED" if passed is None else ("PASS" if passed else "FAIL")
        targets.append({"target": text, "pass": passed, "verdict": verdict, "measured": measured})

    def speed(store: str, method: str) -> float | None:
        summary = by_key.get((store, method))
        return None if summary is None else summary.mb_s

    for store in stores:
        a = speed(store, "client")
        for b_id in ("boto3-default", "boto3-tuned"):
            if store == "local":
                continue
            b = speed(store, b_id)
            text = f"{store}: (a) client >= (b) {BY_ID[b_id].label.split(', ', 1)[1]}"
            if a is None or b is None:
                add(text, None, f"(a) {_fmt(a)} MB/s, (b) {_fmt(b)} MB/s")
            else:
                add(text, a >= b, f"(a) {a:,.1f} MB/s vs (b) {b:,.1f} MB/s ({a / b:.2f}x)")
        c = speed(store, "curl")
        for method_id, what in (("client", "(a) client"), ("client-1", "(a) one stream")):
            top = speed(store, method_id)
            text = f"{store}: {what} >= {TARGET_VS_CURL:g} x (c) single PUT"
            if top is None or c is None:
                add(text, None, f"{what} {_fmt(top)} MB/s, (c) {_fmt(c)} MB/s")
            else:
                add(text, top >= TARGET_VS_CURL * c, f"{what} {top:,.1f} MB/s vs (c) "
                    f"{c:,.1f} MB/s ({top / c:.2f}x)")  # fmt: skip
    budget = (TARGET_RSS_BASE + args.part_size * args.concurrency) / MiB
    for store in stores:
        cli = by_key.get((store, "cli"))
        api = by_key.get((store, "client"))
        source, summary = ("CLI", cli) if cli and cli.client_rss_mib_max else ("Python", api)
        text = (
            f"{store}: (a) client peak RSS <= 100 MiB + part size x concurrency = {budget:,.0f} MiB"
        )
        if summary is None or summary.client_rss_mib_max is None:
            add(text, None, "no (a) run")
        else:
            peak = summary.client_rss_mib_max
            add(text, peak <= budget, f"{source} child: max {peak:,.1f} MiB over the rounds")
    for adapter in ("s3", "local"):
        for path in ("in-process", "HTTP"):
            for checksums in (False, True):
                rows = [
                    r
                    for r in signing
                    if r.adapter == adapter and r.path == path and r.checksums == checksums
                ]
                if not rows:
                    continue
                values = [r.cpu_s_per_10k for r in rows if r.ok and r.cpu_s_per_10k is not None]
                text = (
                    f"signing 10,000 part URLs < {TARGET_SIGNING_CPU_S:g} s CPU: {adapter} "
                    f"adapter, {path}, {'with' if checksums else 'without'} per-part SHA-256"
                )
                if not values:
                    add(text, None, rows[0].error or "not measured")
                else:
                    cpu = statistics.median(values)
                    add(
                        text,
                        cpu < TARGET_SIGNING_CPU_S,
                        f"{cpu:.3f} s (design.md's bound, < {DESIGN_SIGNING_CPU_S:g} s: "
                        f"{'PASS' if cpu < DESIGN_SIGNING_CPU_S else 'FAIL'})",
                    )
    return targets


def render(
    summaries: Sequence[Summary],
    ratios: Sequence[dict[str, Any]],
    signing: Sequence[SigningResult],
    targets: Sequence[dict[str, Any]],
    meta: dict[str, Any],
) -> str:
    out: list[str] = []
    size = meta["size"]
    size_text = f"{size / GiB:g} GiB" if size >= GiB else f"{size / MiB:g} MiB"
    out.append(
        f"## Upload of one {size_text} file: median of {meta['rounds']} round(s) "
        f"(MB/s = 10^6 bytes/s)"
    )
    out.append("")
    out.append(
        f"os.cpu_count() = {meta['cpu_count']}; Python {meta['python']}; "
        f"(a): part size {meta['part_size'] // MiB} MiB, concurrency {meta['concurrency']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + f". Method order rotated every round; warm-up: {meta['warmup']}. Stores: "
        + "; ".join(f"**{name}**: {STORE_LABELS[name]}" for name in meta["stores"])
        + "."
    )
    out.append("")
    out.append(
        "| store | method | MB/s (median) | MB/s (min-max) | s (median) | of which complete s "
        "| MB/s before complete | client CPU s | client peak RSS MiB | bigupload CPU s "
        "| nanio CPU s | failed |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        label = BY_ID[s.method].label
        if s.note:
            out.append(f"| {s.store} | {label} | {s.note} | | | | | | | | | |")
            continue
        rss = _fmt(s.client_rss_mib, 0)
        if s.client_rss_mib_max is not None and s.client_rss_mib_max != s.client_rss_mib:
            rss += f" (max {_fmt(s.client_rss_mib_max, 0)})"
        out.append(
            f"| {s.store} | {label} | {_fmt(s.mb_s)} | {_fmt(s.mb_s_min)}-{_fmt(s.mb_s_max)} | "
            f"{_fmt(s.seconds, 2)} | {_fmt(s.complete_s, 2)} | {_fmt(s.mb_s_before_complete)} | "
            f"{_fmt(s.client_cpu_s, 2)} | {rss} | "
            f"{_fmt(s.bigupload_cpu_s, 2)} | {_fmt(s.nanio_cpu_s, 2)} | {s.failed} |"
        )
    startup = meta.get("cli_startup")
    if startup:
        out.append("")
        out.append(
            f"The CLI row is timed from spawn to exit, interpreter start-up included: "
            f"`bigupload upload --help` alone takes {startup['wall_s']:.2f} s "
            f"({startup['rss_mib']:.0f} MiB peak RSS)."
        )
    if ratios:
        out.append("")
        out.append("| store | ratio | ratio of medians | per-round ratios (min-max) |")
        out.append("|---|---|---:|---:|")
        for r in ratios:
            out.append(
                f"| {r['store']} | {r['ratio']} | {_fmt(r['value'], 2)} | "
                f"{_fmt(r['paired_min'], 2)}-{_fmt(r['paired_max'], 2)} |"
            )
    if signing:
        out.append("")
        out.append(
            "| signing 10,000 part URLs (5 TiB) | per-part SHA-256 | CPU s (median) "
            "| CPU s (min-max) | wall s | µs CPU per URL |"
        )
        out.append("|---|---|---:|---:|---:|---:|")
        for adapter in ("s3", "local"):
            for path in ("in-process", "HTTP"):
                for checksums in (False, True):
                    rows = [
                        r
                        for r in signing
                        if r.adapter == adapter and r.path == path and r.checksums == checksums
                    ]
                    if not rows:
                        continue
                    what = (
                        f"{adapter} adapter, `presign_parts` in-process"
                        if path == "in-process"
                        else f"{adapter} adapter, HTTP `POST .../parts` x "
                        f"{-(-rows[0].parts // SIGNING_BATCH)} (server CPU)"
                    )
                    good = [r for r in rows if r.ok and r.cpu_s_per_10k is not None]
                    if not good:
                        out.append(
                            f"| {what} | {'yes' if checksums else 'no'} | "
                            f"not measured: {rows[0].error} | | | |"
                        )
                        continue
                    cpu = [r.cpu_s_per_10k for r in good if r.cpu_s_per_10k is not None]
                    wall = _median([r.wall_s for r in good])
                    med = statistics.median(cpu)
                    out.append(
                        f"| {what} | {'yes' if checksums else 'no'} | {med:.3f} | "
                        f"{min(cpu):.3f}-{max(cpu):.3f} | {_fmt(wall, 3)} | "
                        f"{med * 1e6 / SIGNING_PARTS:.0f} |"
                    )
    if targets:
        out.append("")
        out.append("Targets (checked, not asserted):")
        out.append("")
        for t in targets:
            out.append(f"- **{t['verdict']}** {t['target']}: {t['measured']}")
    if meta.get("notes"):
        out.append("")
        for note in meta["notes"]:
            out.append(f"- {note}")
    out.append("")
    out.append(f"Command: `{meta['command']}`")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Command line, and the experiment
# --------------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    units = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    number = cleaned.rstrip("KMGT")
    unit = cleaned[len(number) :]
    try:
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 1GiB or 256MiB") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=None, help="file size [1GiB]")
    parser.add_argument("--rounds", type=int, default=None, help="repetitions [3]")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256 MiB, 1 round")
    parser.add_argument(
        "--part-size", type=parse_size, default=16 * MiB, help="(a)'s part size [16MiB]"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="(a)'s parallel parts [8]")
    parser.add_argument(
        "--stores", default="nanio,local", help="comma-separated: nanio, local [both]"
    )
    parser.add_argument(
        "--skip",
        default="",
        help="methods not to run, comma-separated: " + ", ".join(m.id for m in METHODS),
    )
    parser.add_argument(
        "--what",
        choices=("all", "uploads", "signing"),
        default="all",
        help="measure the uploads, the signing cost, or both [all]",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the small warm-up uploads")
    parser.add_argument(
        "--timeout", type=float, default=None, help="per upload, s [max(120, size / 5 MB/s)]"
    )
    parser.add_argument(
        "--tmp-dir", type=Path, default=None, help="where the file and the stores go [$TMPDIR]"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep every run's output")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON results")
    args = parser.parse_args(argv)
    args.size = args.size or (256 * MiB if args.quick else GiB)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    args.skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    if not args.stores or any(s not in STORE_LABELS for s in args.stores):
        parser.error("--stores takes nanio and/or local")
    if any(s not in BY_ID for s in args.skip):
        parser.error("--skip takes " + ", ".join(BY_ID))
    if args.rounds < 1 or args.concurrency < 1 or args.size < 1:
        parser.error("--rounds, --concurrency and --size must be positive")
    if not 5 * MiB <= args.part_size <= 5 * GiB:
        parser.error("--part-size must be between 5 MiB and 5 GiB (S3's limits)")
    return args


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so that every process started here is stopped."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def make_file(path: Path, size: int) -> None:
    """``size`` random bytes, written in 16 MiB blocks, then flushed and read once (so every
    method starts with the file in the page cache)."""
    block = 16 * MiB
    with path.open("wb") as handle:
        left = size
        while left:
            chunk = min(block, left)
            handle.write(os.urandom(chunk))
            left -= chunk
    os.sync()
    with path.open("rb") as handle:
        while handle.read(block):
            pass


def check_disk(where: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(where).free
    if free < needed:
        raise SystemExit(
            f"upload_throughput: {what}: {free / GiB:.1f} GiB free in {where}, "
            f"{needed / GiB:.1f} GiB needed; free some space, use a smaller --size "
            f"or another --tmp-dir"
        )


def versions() -> dict[str, str]:
    found = {}
    for package in ("bigupload", "boto3", "s3transfer", "nanio", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        out = subprocess.run(
            ["curl", "--version"], capture_output=True, timeout=10, check=False
        ).stdout
        found["curl"] = out.decode().split()[1]
    return found


def run_uploads(
    ctx: Context, stores: dict[str, Store], path: Path, warm_path: Path | None
) -> list[RunResult]:
    args = ctx.args
    runs: list[RunResult] = []
    methods_for = {
        name: [
            m
            for m in METHODS
            if m.id not in ctx.unavailable and not (m.s3_only and name == "local")
        ]
        for name in stores
    }

    def one(store: Store, method: Method, file: Path, round_no: int, position: int) -> RunResult:
        check_disk(ctx.workdir, 2 * file.stat().st_size, "not enough free disk for the next run")
        result = upload_once(ctx, store, method, file, round_no, position)
        for server in store.servers:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.name} died during the benchmark (status {server.proc.returncode}):"
                    f"\n{tail(server.stderr_path)}"
                )
        what = "warm-up" if round_no == 0 else f"round {round_no}"
        if result.ok:
            log(
                f"{what} {store.name:5} {method.id:13}: {result.mb_s:7.1f} MB/s "
                f"({result.seconds:.2f} s, client CPU {_fmt(result.client_cpu_s, 2)} s, "
                f"RSS {_fmt(result.client_rss_mib, 0)} MiB)"
            )
        else:
            log(f"{what} {store.name:5} {method.id:13}: FAILED: {result.error}")
        return result

    if warm_path is not None:
        for store in stores.values():
            for method in list(methods_for[store.name]):
                result = one(store, method, warm_path, 0, 0)
                runs.append(result)
                if not result.ok:  # no point in timing what cannot upload a small file
                    ctx.unavailable[method.id + "@" + store.name] = (
                        "failed in the warm-up: " + (result.error or "").splitlines()[0][:300]
                    )
                    methods_for[store.name].remove(method)
    names = list(stores)
    for round_no in range(1, args.rounds + 1):
        order = names if round_no % 2 else names[::-1]
        for name in order:
            methods = methods_for[name]
            if not methods:
                continue
            shift = (round_no - 1) % len(methods)
            for position, method in enumerate(methods[shift:] + methods[:shift], start=1):
                runs.append(one(stores[name], method, path, round_no, position))
    return runs


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is under it, else absolute."""
    relative = os.path.relpath(path, Path.cwd())
    return str(path) if relative.startswith("..") else relative


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    script, python = (_shown_path(p) for p in (Path(__file__).resolve(), Path(sys.executable)))
    command = shlex.join([python, script, *(sys.argv[1:] if argv is None else argv)])
    notes: list[str] = []
    meta: dict[str, Any] = {
        "command": command,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "size": args.size,
        "rounds": args.rounds,
        "part_size": args.part_size,
        "concurrency": args.concurrency,
        "stores": args.stores,
        "warmup": "none" if args.no_warmup else "one small upload per (store, method), unmeasured",
        "versions": versions(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "notes": notes,
    }
    runs: list[RunResult] = []
    signing: list[SigningResult] = []
    stores: dict[str, Store] = {}
    unavailable: dict[str, str] = {}
    base = args.tmp_dir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    if args.what != "signing":
        check_disk(base, FREE_FACTOR * args.size, "not enough free disk to start")

    with (
        terminate_as_exit(),
        tempfile.TemporaryDirectory(prefix="bigupload-upbench-", dir=base) as tmp,
    ):
        workdir = Path(tmp)
        try:
            for name in args.stores:
                log(f"starting the {name} store ...")
                stores[name] = (
                    start_nanio_store(workdir, notes)
                    if name == "nanio"
                    else start_local_store(workdir)
                )
                for server in stores[name].servers:
                    log(f"  {server.name}: pid {server.proc.pid}, {server.url}")
            if args.what != "signing":
                unavailable, cli_flags = probe_methods(args, workdir)
                for method_id, why in unavailable.items():
                    log(f"not measured: {method_id}: {why}")
                ctx = Context(args, workdir, cli_flags, unavailable)
                if cli_flags:
                    meta["cli_flags"] = cli_flags
                meta["cli_startup"] = cli_startup(ctx)
                path = workdir / "upload.bin"
                log(f"writing {args.size / MiB:,.0f} MiB of random bytes to {path} ...")
                make_file(path, args.size)
                warm_path = None
                if not args.no_warmup:
                    warm_path = workdir / "warm-up.bin"
                    make_file(warm_path, min(args.size, 2 * args.part_size + MiB))
                runs = run_uploads(ctx, stores, path, warm_path)
                path.unlink()
            if args.what != "uploads":
                signing = measure_signing(args, workdir, stores)
        finally:
            for store in stores.values():
                store.api.close()
                for server in store.servers:
                    stop(server.proc, server.name)
                    if server.proc.returncode not in (0, -signal.SIGTERM):
                        log(
                            f"{server.name} exit status {server.proc.returncode}:\n"
                            + tail(server.stderr_path)
                        )

    summaries = []
    if args.what != "signing":
        for store in args.stores:
            for method in METHODS:
                if method.s3_only and store == "local":
                    note = "n/a: the local adapter has no S3 API"
                else:
                    note = unavailable.get(method.id) or unavailable.get(f"{method.id}@{store}")
                    if note and not note.startswith(("skipped", "failed")):
                        note = "not measured: " + note
                summaries.append(summarize(runs, store, method.id, note))
    by_key = {(s.store, s.method): s for s in summaries}
    ratios = compute_ratios(runs, by_key, args.stores)
    targets = evaluate_targets(by_key, signing, args.stores, args)
    if args.what != "signing":
        notes.append(
            "(a) Python and (b) run in a child process each (`bench/upload_worker.py`), timed "
            "around the upload call; (c) is timed by curl (`time_total`); client CPU and peak "
            "RSS come from each child's rusage (`wait4`); server CPU from `/proc`."
        )
        notes.append(
            "The file is read from the page cache by every method (made, synced and read once "
            "first); after each upload the objects are deleted and `sync` runs, so no method "
            "pays for another's write-back."
        )
        if "local" in args.stores:
            notes.append(
                "local store: (b) does not apply (no S3 API); (c) is a single-PUT ticket "
                "(`multipart: false`) sent to bigupload's /store endpoint."
            )
    print(render(summaries, ratios, signing, targets, meta))

    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "upload_throughput",
        "meta": meta,
        "summary": [asdict(s) for s in summaries],
        "ratios": ratios,
        "targets": targets,
        "signing": [asdict(r) for r in signing],
        "runs": [asdict(r) for r in runs],
    }
    args.output.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    log(f"wrote {args.output}")
    return 1 if any(not r.ok for r in runs if r.round > 0) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: every process started here was stopped")
        sys.exit(130)
