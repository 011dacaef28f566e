"""The workload ``bench/create_instructions.py`` runs under callgrind: one process, in-process
requests through httpx's ASGI transport, phases separated by ``os.getppid()`` calls (callgrind
is run with ``--dump-before=getppid``, so each phase's instructions land in their own dump).

    python bench/instructions_workload.py bigupload local 200
    python bench/instructions_workload.py bigupload s3 200 http://127.0.0.1:PORT
    python bench/instructions_workload.py baseline - 200

Phases (after start-up and three warm-up requests): the creates; then, for bigupload, each
layer alone as many times: the store's ``presign_put``, the registry's insert of a new record,
and ``GET /health`` (the framework's floor: middleware, routing, a JSON answer); for the
baseline, boto3's ``generate_presigned_url`` alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

BODY = {"filename": "big.iso", "content_type": "application/octet-stream", "size": 50_000_000}
WARM = 3


def phase() -> None:
    os.getppid()  # the marker callgrind dumps before


async def bigupload(store: str, requests: int, endpoint: str | None) -> None:
    from bigupload.config import load_settings

    data = Path(tempfile.mkdtemp())
    url = f"sqlite+aiosqlite:///{data / 'registry.db'}"
    extra: dict[str, Any] = {}
    if store == "s3":
        extra = {"storage": "s3", "s3_bucket": "bench", "s3_endpoint_url": endpoint}
    settings = load_settings(
        data_dir=data,
        database_url=url,
        secret_key="b" * 48,
        public_url="http://bench",
        # As bench/create_upload.py: the limiter counts every request but refuses none.
        rate_limit="1000000/second;60000000/minute",
        run_jobs=False,
        local_storage_events=False,
        **extra,
    )
    if settings.metrics:  # as `bigupload serve` does (BIGUPLOAD_METRICS=off: not at all)
        from bigupload.metrics.collect import prepare_multiprocess

        prepare_multiprocess(settings)

    from bigupload import migrate
    from bigupload.app import create_app
    from bigupload.auth import repository as keys
    from bigupload.db import create_engine, create_sessionmaker
    from bigupload.uploads import service

    engine = create_engine(url)
    await migrate.upgrade(engine)
    async with create_sessionmaker(engine)() as session, session.begin():
        _, key = await keys.create(session, "bench", "bench")
    await engine.dispose()
    app = create_app(settings)
    storage = app.state.storage
    inserter = app.state.file_inserter
    headers = {"Authorization": f"Bearer {key}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        for _ in range(WARM):
            answer = await http.post("/api/v1/uploads", json=BODY, headers=headers)
            assert answer.status_code == 201, answer.text
            assert (await http.get("/health")).status_code == 200
        phase()
        for _ in range(requests):
            answer = await http.post("/api/v1/uploads", json=BODY, headers=headers)
            assert answer.status_code == 201, answer.text
        phase()
        for n in range(requests):
            storage.presign_put(
                f"uploads/bench/2026/01/{n:08d}",
                content_type="application/octet-stream",
                size=50_000_000,
                checksum_sha256=None,
                expires_in=900,
            )
        phase()
        for _ in range(requests):
            record = service.new_record(
                "bench",
                storage,
                filename="big.iso",
                content_type="text/plain",
                size=1,
                metadata={},
            )
            await inserter.insert(record)
        phase()
        for _ in range(requests):
            assert (await http.get("/health")).status_code == 200
        phase()
    await app.state.engine.dispose()


async def baseline(requests: int) -> None:
    import baseline_app

    logging.getLogger().setLevel(logging.WARNING)
    transport = httpx.ASGITransport(app=baseline_app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        for _ in range(WARM):
            assert (await http.post("/sign", json=BODY)).status_code == 201
        phase()
        for _ in range(requests):
            answer = await http.post("/sign", json=BODY)
            assert answer.status_code == 201, answer.text
        phase()
        for n in range(requests):
            baseline_app._client.generate_presigned_url(
                "put_object",
                Params={
                    "Bucket": baseline_app.BUCKET,
                    "Key": f"uploads/{n:08d}",
                    "ContentType": "application/octet-stream",
                    "ContentLength": 50_000_000,
                },
                ExpiresIn=baseline_app.EXPIRES_IN,
            )
        phase()


def main() -> None:
    target, store, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
    endpoint = sys.argv[4] if len(sys.argv) > 4 else None
    if target == "baseline":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        asyncio.run(baseline(requests))
    else:
        from bigupload.logs import configure_logging

        # The access log as `bigupload serve` writes it (INFO, a line per request), to nowhere.
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
        configure_logging("INFO")
        asyncio.run(bigupload(store, requests, endpoint))


if __name__ == "__main__":
    main()
