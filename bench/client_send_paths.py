"""bigupload's client sending parts by ``sendfile`` (its path for plain-HTTP URLs) against the
same client sending them through httpx (its path for TLS and proxied URLs), in one process
against one local-store ``bigupload serve``, alternating round by round.

Per upload: MB/s (the whole ``Client.upload``, complete included), the client's CPU seconds per
GiB (this process's rusage over the call) and the server's (``/proc``). One random file under
``--tmp-dir``, removed at the end, as is the store.

    .venv/bin/python bench/client_send_paths.py                  # 256 MiB, 3 rounds
    .venv/bin/python bench/client_send_paths.py --size 1073741824 --concurrency 4

Medians (min-max) go to stdout as a markdown table, progress to stderr.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from servers import log, start_bigupload_with_key, stop
from upload_throughput import MB, GiB, MiB, make_file

from bigupload.client import Client

PATHS = ("httpx", "sendfile")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spread(values: Sequence[float], digits: int) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256 * MiB, help="bytes of the file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--part-size", type=int, default=16 * MiB)
    parser.add_argument("--tmp-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-send-paths-", dir=args.tmp_dir))
    settings = {
        "BIGUPLOAD_STORAGE": "local",
        "BIGUPLOAD_RATE_LIMIT": "off",
        "BIGUPLOAD_RUN_JOBS": "false",
    }
    server = start_bigupload_with_key(work, "bigupload", settings)
    key = server.auth_headers["Authorization"].split()[1]
    figures: dict[str, dict[str, list[float]]] = {
        p: {"mb_s": [], "client": [], "server": []} for p in PATHS
    }
    try:
        path = work / "upload.bin"
        make_file(path, args.size)
        gib = args.size / GiB
        for n in range(args.rounds):
            for name in PATHS if n % 2 == 0 else reversed(PATHS):
                client = Client(
                    server.url,
                    key,
                    concurrency=args.concurrency,
                    part_size=args.part_size,
                    cache_dir=work / "cache",
                )
                if name == "httpx":
                    client.direct.usable = lambda url: False  # type: ignore[method-assign]
                server_before = server.cpu_seconds() or 0.0
                cpu_before, started = own_cpu(), time.perf_counter()
                remote = client.upload(path, resume=False)
                seconds, cpu = time.perf_counter() - started, own_cpu() - cpu_before
                server_cpu = (server.cpu_seconds() or 0.0) - server_before
                client.delete(remote.id)
                client.close()
                os.sync()
                f = figures[name]
                f["mb_s"].append(args.size / seconds / MB)
                f["client"].append(cpu / gib)
                f["server"].append(server_cpu / gib)
                log(
                    f"round {n + 1} {name}: {f['mb_s'][-1]:.0f} MB/s, client CPU "
                    f"{f['client'][-1]:.2f} s/GiB, server CPU {f['server'][-1]:.2f} s/GiB"
                )
    finally:
        stop(server.proc, server.name)
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{args.size / MiB:.0f} MiB, {args.rounds} round(s), {args.part_size / MiB:.0f} MiB "
        f"parts, concurrency {args.concurrency}; medians (min-max)\n"
    )
    print("| parts sent by | MB/s (complete included) | client CPU s/GiB | server CPU s/GiB |")
    print("| --- | ---: | ---: | ---: |")
    for name in PATHS:
        f = figures[name]
        print(
            f"| {name} | {spread(f['mb_s'], 0)} | {spread(f['client'], 2)} "
            f"| {spread(f['server'], 2)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
