"""What the start-up store check costs on S3: the bucket's set-up read beside the old HEAD alone.

Against moto's S3 server over HTTP, interleaved in one run: ``S3Storage.check()`` (one
HeadBucket, the check ``serve`` made before) and ``startup_check`` (HeadBucket, then the bucket's
CORS and lifecycle; notifications and encryption are not asked for), each timed in wall time and
CPU (``time.process_time``, this process; moto's server runs in a thread of it too).

    .venv/bin/python bench/startup_check.py             # 21 runs of each
    .venv/bin/python bench/startup_check.py --runs 51

Prints the medians and the ratio to the old check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")

from bigupload.config import load_settings
from bigupload.storage.s3 import S3Storage, build_client, setup
from tests.support.moto import MotoServer, s3_client


async def measure(endpoint_url: str, runs: int) -> dict[str, tuple[list[float], list[float]]]:
    s3_client(endpoint_url).create_bucket(Bucket="bench-uploads")
    store = S3Storage(build_client(endpoint_url=endpoint_url, region="us-east-1"), "bench-uploads")
    settings = load_settings(data_dir=Path(tempfile.mkdtemp()))
    rows: dict[str, tuple[list[float], list[float]]] = {
        "HeadBucket (before)": ([], []),
        "startup_check": ([], []),
    }

    async def old() -> None:
        await store.check()

    async def new() -> None:
        await setup.startup_check(store.client, store.bucket, settings)

    await old()
    await new()  # warm both (connections, botocore's models)
    for _ in range(runs):
        for name, call in (("HeadBucket (before)", old), ("startup_check", new)):
            wall, cpu = time.perf_counter(), time.process_time()
            await call()
            rows[name][0].append(time.perf_counter() - wall)
            rows[name][1].append(time.process_time() - cpu)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    with MotoServer() as server:
        rows = asyncio.run(measure(server.endpoint_url, args.runs))
    base = statistics.median(rows["HeadBucket (before)"][0])
    print("| check | median wall (ms) | median CPU (ms) | wall / before |")
    print("| --- | --- | --- | --- |")
    for name, (wall, cpu) in rows.items():
        median = statistics.median(wall)
        print(
            f"| {name} | {median * 1000:.1f} | {statistics.median(cpu) * 1000:.1f} | "
            f"{median / base:.1f} |"
        )


if __name__ == "__main__":
    main()
