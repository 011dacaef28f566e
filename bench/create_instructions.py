"""Instructions per ``POST /api/v1/uploads``, counted by valgrind's callgrind: a figure that does
not move with the machine's load, unlike req/s.

Each tree given (``--tree DIR``, a checkout whose ``src/`` is put first on ``PYTHONPATH``; the
default compares this checkout with itself) runs the same in-process workload under callgrind
twice: set-up only, and set-up plus ``--requests`` creates through httpx's ASGI transport (a
fresh SQLite registry and local store, one API key, the job runner off). The difference divided
by the number of requests is the cost of one create (app, registry, signing, and the ASGI
client's own share, which is the same for every tree). Trees alternate, and the first one is
the baseline of the ratios.

    .venv/bin/python bench/create_instructions.py --tree ../old-checkout --tree .

Prints one line per tree and a markdown table on stdout; needs ``valgrind`` on the PATH.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKLOAD = r"""
import asyncio, sys, tempfile
from pathlib import Path

import httpx

from bigupload import migrate
from bigupload.app import create_app
from bigupload.auth import repository as keys
from bigupload.config import load_settings
from bigupload.db import create_engine, create_sessionmaker

REQUESTS = int(sys.argv[1])
BODY = {"filename": "big.iso", "content_type": "application/octet-stream", "size": 50_000_000}


async def main() -> None:
    data = Path(tempfile.mkdtemp())
    url = f"sqlite+aiosqlite:///{data / 'registry.db'}"
    engine = create_engine(url)
    await migrate.upgrade(engine)
    async with create_sessionmaker(engine)() as session, session.begin():
        _, key = await keys.create(session, "bench", "bench")
    await engine.dispose()
    settings = load_settings(
        data_dir=data, database_url=url, secret_key="b" * 48, public_url="http://bench",
        rate_limit="off", run_jobs=False, local_storage_events=False,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        for _ in range(3 + REQUESTS):  # three to warm caches, as in both runs
            answer = await http.post("/api/v1/uploads", json=BODY, headers=headers)
            assert answer.status_code == 201, answer.text
    await app.state.engine.dispose()


asyncio.run(main())
"""


def instructions(tree: Path, requests: int) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIGUPLOAD_")}
    env["PYTHONPATH"] = str(tree / "src")
    env["PYTHONHASHSEED"] = "0"
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}/cg.out",
                sys.executable,
                "-c",
                WORKLOAD,
                str(requests),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if run.returncode != 0:
        raise SystemExit(f"{tree}: the workload failed:\n{run.stderr[-3000:]}")
    found = re.search(r"Collected : (\d+)", run.stderr)
    if found is None:
        raise SystemExit(f"{tree}: no instruction count in valgrind's output")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, help="a checkout (repeatable)")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [HERE.parent])]
    per_create: dict[Path, float] = {}
    for tree in trees:
        base = instructions(tree, 0)
        loaded = instructions(tree, args.requests)
        per_create[tree] = (loaded - base) / args.requests
        print(f"{tree}: {per_create[tree] / 1e6:.3f} M instructions per create", file=sys.stderr)
    first = per_create[trees[0]]
    print("| tree | instructions per create | ratio to the first |")
    print("| --- | ---: | ---: |")
    for tree, cost in per_create.items():
        print(f"| {tree.name} | {cost / 1e6:.3f} M | {cost / first:.2f} |")


if __name__ == "__main__":
    main()
