"""How long ``bigupload`` takes to start: median wall time and CPU of the client commands.

Each command is run ``--runs`` times as a fresh process, interleaved with ``python -c pass`` (the
interpreter's own start, the floor no command can go under) so that the machine's noise hits
every row alike. The CPU of each run is the difference of ``resource.getrusage(RUSAGE_CHILDREN)``
(user + system) around it.

    .venv/bin/python bench/cli_startup.py             # 15 runs of each
    .venv/bin/python bench/cli_startup.py --runs 5

A markdown table goes to stdout: median wall time, median CPU, and wall time above the baseline.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIGUPLOAD = str(Path(sys.executable).with_name("bigupload"))

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "bigupload --help": [BIGUPLOAD, "--help"],
    "bigupload upload --help": [BIGUPLOAD, "upload", "--help"],
    "bigupload ls --help": [BIGUPLOAD, "ls", "--help"],
    "bigupload info --help": [BIGUPLOAD, "info", "--help"],
    "bigupload download --help": [BIGUPLOAD, "download", "--help"],
    "bigupload rm --help": [BIGUPLOAD, "rm", "--help"],
    # A client command that runs: it stops at its usage error, before any network.
    "bigupload ls (no server given)": [BIGUPLOAD, "ls"],
}


def one_run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIGUPLOAD_")}
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # a warm-up of each: the page cache, .pyc files
        one_run(argv, env)
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            wall, cpu = one_run(argv, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    baseline = statistics.median(walls["python -c pass"])
    print(f"{args.runs} runs each, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}\n")
    print("| command | median wall (s) | median CPU (s) | wall above `python -c pass` (s) |")
    print("|---|---:|---:|---:|")
    for name in COMMANDS:
        wall = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        print(f"| `{name}` | {wall:.3f} | {cpu:.3f} | {wall - baseline:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
