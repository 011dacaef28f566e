"""Instructions per ``POST /api/v1/uploads``, counted by valgrind's callgrind, against the bare
signer (``bench/baseline_app.py``) counted in the same run: figures that do not move with the
machine's load, unlike req/s.

Each target runs ``bench/instructions_workload.py`` once under callgrind, in-process through
httpx's ASGI transport (its own share is in every figure, bigupload's and the baseline's alike):
a fresh SQLite registry, one API key, the job runner off, the access log on (to nowhere) and
the rate limiter counting (as ``bench/create_upload.py``). The workload marks its phases with
``os.getppid()`` and callgrind dumps before each (``--dump-before=getppid``), so the creates are
counted alone, without start-up. The targets:

* ``baseline``: ``POST /sign`` of the bare FastAPI + boto3 signer; then boto3's presign alone.
* bigupload on the embedded defaults (``local``: SQLite + the local store) and on an S3 store
  (``s3``: a moto server over HTTP, started here; path-style URLs), for each ``--tree`` (a
  checkout whose ``src/`` goes first on ``PYTHONPATH``; default: this one). Then each layer
  alone, as many times: the store's ``presign_put``, the registry insert of a new record, and
  ``GET /health`` (middleware, routing and a JSON answer: the framework's floor).

Also printed, per bigupload target: the inclusive instructions per create of a few native
functions (``callgrind_annotate --inclusive=yes``), where a layer shows in C.

    .venv/bin/python bench/create_instructions.py                       # about 5 minutes
    .venv/bin/python bench/create_instructions.py --tree ../before --tree . --store local

Prints a line per target on stderr and markdown tables on stdout; needs ``valgrind``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "instructions_workload.py"
BIGUPLOAD_PHASES = ("create", "presign_put", "registry insert", "GET /health")
BASELINE_PHASES = ("create", "boto3 presign")
#: Native functions whose inclusive cost locates a layer: (label, pattern of the function).
NATIVE = (
    ("greenlet switches (SQLAlchemy's async bridge)", r"PyGreenlet\.cpp:green_switch\("),
    ("worker threads (aiosqlite)", r"_threadmodule\.c:thread_run "),
    ("sqlite3_step", r":sqlite3_step "),
    ("os.lstat (realpath)", r"posixmodule\.c\.h:os_lstat "),
    ("json encode and decode", r"_json\.c:(encoder|scanner)_call "),
)


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server over HTTP in a child process, with the bucket ``bench``."""
    code = (
        "import sys, boto3\n"
        "from moto.server import ThreadedMotoServer\n"
        "server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
        "server.start()\n"
        "url = f'http://127.0.0.1:{server._server.server_port}'\n"
        "boto3.client('s3', endpoint_url=url, region_name='us-east-1', aws_access_key_id='x',"
        " aws_secret_access_key='y').create_bucket(Bucket='bench')\n"
        "print(url, flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def run(
    tree: Path,
    target: str,
    store: str,
    requests: int,
    endpoint: str | None,
    settings: dict[str, str] | None = None,
) -> tuple[list[float], dict[str, float]]:
    """Instructions per request of each phase, and of the native functions (per create)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIGUPLOAD_", "AWS_"))}
    env.update(settings or {})
    env.update(
        PYTHONPATH=str(tree / "src"),
        PYTHONHASHSEED="0",
        AWS_ACCESS_KEY_ID="AKIABENCHBENCHBENCH0",
        AWS_SECRET_ACCESS_KEY="bench-secret-bench-secret-bench-secret-00",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    argv = [str(WORKLOAD), target, store, str(requests), *([endpoint] if endpoint else [])]
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--dump-before=getppid",
                f"--callgrind-out-file={out}/cg.out",
                sys.executable,
                *argv,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            failure = done.stderr[-3000:]
            raise SystemExit(f"{tree} {target} {store}: the workload failed:\n{failure}")
        dumps = sorted(Path(out).glob("cg.out.*"), key=lambda p: int(p.suffix[1:]))
        totals = [_total(dump) for dump in dumps]
        # Dump 1 is start-up and warm-up; each later one ends a phase.
        phases = [total / requests for total in totals[1:]]
        native = _native(dumps[1], requests) if target == "bigupload" else {}
    return phases, native


def _total(dump: Path) -> int:
    found = re.search(r"^summary: (\d+)", dump.read_text(errors="replace"), re.MULTILINE)
    if found is None:
        raise SystemExit(f"{dump}: no summary line")
    return int(found.group(1))


def _native(dump: Path, requests: int) -> dict[str, float]:
    listing = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    costs: dict[str, float] = {}
    for label, pattern in NATIVE:
        matched = [
            int(line.split()[0].replace(",", ""))
            for line in listing.splitlines()
            if re.search(pattern, line) and line.strip()[:1].isdigit()
        ]
        costs[label] = sum(matched) / requests  # each pattern names non-nested functions
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, help="a checkout (repeatable)")
    parser.add_argument("--store", action="append", choices=("local", "s3"), help="repeatable")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--metrics-off-twin",
        action="store_true",
        help="also count each bigupload target with BIGUPLOAD_METRICS=off",
    )
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [HERE.parent])]
    stores = args.store or ["local", "s3"]
    n = args.requests

    baseline, _ = run(trees[-1], "baseline", "-", n, None)
    print(f"baseline: {baseline[0] / 1e6:.3f} M instructions per create", file=sys.stderr)
    results: dict[tuple[str, str], tuple[list[float], dict[str, float]]] = {}
    for store in stores:
        with moto_server() if store == "s3" else _nothing() as endpoint:
            for tree in trees:
                results[tree.name, store] = run(tree, "bigupload", store, n, endpoint)
                cost = results[tree.name, store][0][0]
                print(f"{tree}, {store}: {cost / 1e6:.3f} M per create", file=sys.stderr)
                if args.metrics_off_twin:
                    off = {"BIGUPLOAD_METRICS": "off"}
                    name = f"{tree.name}, metrics off"
                    results[name, store] = run(tree, "bigupload", store, n, endpoint, off)
                    cost = results[name, store][0][0]
                    print(f"{name}, {store}: {cost / 1e6:.3f} M per create", file=sys.stderr)

    print("| target | store | instructions per create | ratio to the bare signer |")
    print("| --- | --- | ---: | ---: |")
    print(f"| bare signer (baseline_app.py) | - | {baseline[0] / 1e6:.3f} M | 1.00 |")
    for (tree, store), (phases, _) in results.items():
        print(
            f"| bigupload ({tree}) | {store} | {phases[0] / 1e6:.3f} M | "
            f"{phases[0] / baseline[0]:.2f} |"
        )
    print()
    print("Layers alone (M instructions per call):")
    print()
    print("| target | store | " + " | ".join(BIGUPLOAD_PHASES[1:]) + " |")
    print("| --- | --- |" + " ---: |" * (len(BIGUPLOAD_PHASES) - 1))
    print(f"| bare signer | - | {baseline[1] / 1e6:.3f} (boto3) | - | - |")
    for (tree, store), (phases, _) in results.items():
        print(
            f"| bigupload ({tree}) | {store} | "
            + " | ".join(f"{cost / 1e6:.3f}" for cost in phases[1:4])
            + " |"
        )
    print()
    print("Native functions, inclusive (M instructions per create):")
    print()
    columns = list(results)
    print("| function | " + " | ".join(f"{tree}, {store}" for tree, store in columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for label, _ in NATIVE:
        print(
            f"| {label} | "
            + " | ".join(f"{results[c][1][label] / 1e6:.3f}" for c in columns)
            + " |"
        )


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
