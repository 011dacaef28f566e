"""bigupload as the browser sees it: a real ``bigupload serve`` process with its job runner on.

The page's live list only reaches ``completed`` when processing runs, so the service is a real
``bigupload serve`` (like tests/test_pipeline.py), configured through ``BIGUPLOAD_*`` variables and
stopped by its PID. Its store is the local store, or LocalStack (strict S3) with a bucket set up by
``bigupload storage setup``, whose CORS rule lets the page's origin send and read bytes. API keys
are made straight in its registry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bigupload.auth import repository as keys
from bigupload.config import load_settings
from bigupload.db import create_engine, create_sessionmaker
from tests.cli.helpers import Server, bigupload
from tests.conftest import SECRET, make_bucket
from tests.support.localstack import make_client
from tests.support.net import free_port

TIMEOUT = 60.0  # an upper bound against hanging, never a measure of speed


@dataclass
class PageService:
    """A running ``bigupload serve``: its URL (the page's origin), registry and store."""

    url: str
    server: Server
    database_url: str
    store: str
    bucket: str | None = None
    s3: Any = None
    owners: list[str] = field(default_factory=list)

    def new_key(self, owner_prefix: str) -> tuple[str, str]:
        """A fresh owner (so a fresh, empty file list) and an API key of theirs."""
        owner = f"{owner_prefix}-{uuid.uuid4().hex[:8]}"
        # Playwright's sync API runs an event loop in this thread: use another one.
        with ThreadPoolExecutor(1) as pool:
            key = pool.submit(asyncio.run, _create_key(self.database_url, owner)).result(TIMEOUT)
        self.owners.append(owner)
        return owner, key

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=TIMEOUT, trust_env=False)

    def files(self, key: str) -> list[dict[str, Any]]:
        """The owner's records, through the API with the bearer key."""
        with self.http() as http:
            answer = http.get(
                "/api/v1/files", params={"limit": 200}, headers={"Authorization": f"Bearer {key}"}
            )
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    def upload_over_api(self, key: str, filename: str, data: bytes, content_type: str) -> str:
        """One small file through ``/api/v1`` (create, PUT, complete): answer its id."""
        auth = {"Authorization": f"Bearer {key}"}
        with self.http() as http:
            ticket = http.post(
                "/api/v1/uploads",
                json={"filename": filename, "content_type": content_type, "size": len(data)},
                headers=auth,
            )
            assert ticket.status_code == 201, ticket.text
            body = ticket.json()
            put = http.request(body["method"], body["url"], content=data, headers=body["headers"])
            assert put.status_code == 200, put.text
            done = http.post(f"/api/v1/uploads/{body['id']}/complete", headers=auth)
            assert done.status_code == 200, done.text
        file_id: str = body["id"]
        return file_id

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(self.server.stderr[-lines:])


async def _create_key(database_url: str, owner: str) -> str:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            _, clear = await keys.create(session, owner, owner)
    finally:
        await engine.dispose()
    return clear


@contextmanager
def page_service(
    data_dir: Path, store: str, strict_s3: Any = None, **env: str
) -> Iterator[PageService]:
    """Start ``bigupload serve`` on ``store`` ("local" or "s3-strict"); stop it by its PID."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    values = {
        "BIGUPLOAD_SECRET_KEY": SECRET,
        "BIGUPLOAD_RATE_LIMIT": "off",
        "BIGUPLOAD_JOB_POLL_INTERVAL": "0.1",
        "BIGUPLOAD_LOG_LEVEL": "WARNING",
    }
    bucket = s3 = None
    if store == "s3-strict":
        assert strict_s3 is not None, "the strict S3 store needs the strict_s3 fixture"
        s3 = make_client(strict_s3.endpoint_url)
        bucket = make_bucket(s3)
        values |= {
            "BIGUPLOAD_STORAGE": "s3",
            "BIGUPLOAD_S3_ENDPOINT_URL": strict_s3.endpoint_url,
            "BIGUPLOAD_S3_BUCKET": bucket,
            "BIGUPLOAD_S3_REGION": "us-east-1",
            "BIGUPLOAD_S3_ADDRESSING_STYLE": "path",
        }
    elif store != "local":
        raise ValueError(f"unknown store {store!r}")
    values |= env
    if bucket is not None:
        # The bucket's CORS rule (the page's origin may send and read bytes) as an operator
        # makes it: by the command, from the same settings serve then reads.
        made = bigupload(data_dir, "storage", "setup", BIGUPLOAD_PORT=str(port), **values)
        assert made.code == 0, made.stdout + made.stderr
    database_url = load_settings(data_dir=data_dir, secret_key=SECRET).effective_database_url
    server = Server(data_dir, port, **values)
    try:
        server.wait_for_line("listening on")
        server.wait_until_answering()
        assert not [line for line in server.stderr if "storage check" in line], server.stderr
        yield PageService(origin, server, database_url, store, bucket, s3)
    finally:
        server.stop()
