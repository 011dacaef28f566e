"""One upload by one Python uploader, run as a child process of ``bench/upload_throughput.py``.

The parent reads this process's peak RSS and CPU time from ``wait4`` (its rusage) and its
throughput from the JSON line printed on stdout, whose ``seconds`` time the upload call alone:
imports, client construction and argument parsing are left out, as they would be for a
long-running program. ``complete_s`` is the part of it spent in the final complete call
(``POST .../complete`` for the client, ``CompleteMultipartUpload`` for boto3). Methods:

* ``client``: bigupload's Python client, ``Client(url, api_key, concurrency=C, part_size=P)
  .upload(path)``, talking to the bigupload API (``BIGUPLOAD_URL``, ``BIGUPLOAD_API_KEY``);
* ``boto3-default``: ``boto3 ... upload_file(path, bucket, key)`` with the default
  ``TransferConfig`` (s3transfer: 8 MiB parts, 10 threads);
* ``boto3-tuned``: the same with ``TransferConfig(multipart_chunksize=P, max_concurrency=C,
  multipart_threshold=P)``, i.e. the parts and concurrency of ``client``.

The boto3 methods read ``BENCH_S3_ENDPOINT``, ``BENCH_S3_BUCKET``, ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``; the client is s3v4, path-style, with boto3's defaults otherwise
(including its default checksum behaviour).

    python bench/upload_worker.py client FILE --part-size 16777216 --concurrency 8
    python bench/upload_worker.py boto3-default FILE --key bench/object
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

METHODS = ("client", "boto3-default", "boto3-tuned")


def _file_id(result: Any) -> str | None:
    """The uploaded file's id, whatever shape ``Client.upload`` answers (object or mapping)."""
    for value in (getattr(result, "id", None), getattr(result, "file_id", None)):
        if value is not None:
            return str(value)
    if isinstance(result, dict):
        value = result.get("id") or result.get("file_id")
        return None if value is None else str(value)
    return None


def upload_with_client(path: Path, part_size: int, concurrency: int) -> tuple[float, Any]:
    from bigupload.client import Client

    client = Client(
        os.environ["BIGUPLOAD_URL"],
        os.environ["BIGUPLOAD_API_KEY"],
        concurrency=concurrency,
        part_size=part_size,
    )
    marks = time_complete_calls(getattr(client, "http", None))
    try:
        started = time.perf_counter()
        result = client.upload(path)
        seconds = time.perf_counter() - started
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()
    return seconds, {"file_id": _file_id(result), **complete_seconds(marks)}


def time_complete_calls(http: Any) -> dict[str, float]:
    """Note when the client's last ``POST .../complete`` went out and when it was answered
    (httpx event hooks on the client's own ``httpx.Client``, when it has one)."""
    import httpx

    marks: dict[str, float] = {}
    if not isinstance(http, httpx.Client):
        return marks

    def on_request(request: httpx.Request) -> None:
        if request.url.path.endswith("/complete"):
            marks["start"] = time.perf_counter()

    def on_response(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/complete"):
            marks["end"] = time.perf_counter()

    hooks = http.event_hooks
    http.event_hooks = {
        "request": [*hooks.get("request", []), on_request],
        "response": [*hooks.get("response", []), on_response],
    }
    return marks


def complete_seconds(marks: dict[str, float]) -> dict[str, float]:
    if "start" in marks and "end" in marks:
        return {"complete_s": marks["end"] - marks["start"]}
    return {}


def upload_with_boto3(
    path: Path, key: str, part_size: int, concurrency: int, tuned: bool
) -> tuple[float, Any]:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=os.environ["BENCH_S3_ENDPOINT"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    if tuned:
        config = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=concurrency,
        )
    else:
        config = TransferConfig()
    details: dict[str, Any] = {
        "multipart_chunksize": config.multipart_chunksize,
        "max_concurrency": config.max_concurrency,
        "multipart_threshold": config.multipart_threshold,
    }
    marks: dict[str, float] = {}

    def mark(name: str) -> Any:
        def handler(**_: Any) -> None:
            marks[name] = time.perf_counter()

        return handler

    s3.meta.events.register("before-call.s3.CompleteMultipartUpload", mark("start"))
    s3.meta.events.register("after-call.s3.CompleteMultipartUpload", mark("end"))
    started = time.perf_counter()
    s3.upload_file(str(path), os.environ["BENCH_S3_BUCKET"], key, Config=config)
    seconds = time.perf_counter() - started
    s3.close()
    return seconds, details | complete_seconds(marks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("file", type=Path)
    parser.add_argument("--part-size", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--key", default="bench/object", help="the object key (boto3 only)")
    args = parser.parse_args(argv)
    size = args.file.stat().st_size
    if args.method == "client":
        seconds, details = upload_with_client(args.file, args.part_size, args.concurrency)
    else:
        seconds, details = upload_with_boto3(
            args.file, args.key, args.part_size, args.concurrency, args.method == "boto3-tuned"
        )
    print(json.dumps({"method": args.method, "bytes": size, "seconds": seconds, **details}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
