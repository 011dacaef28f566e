"""``bigupload sweep``: one sweep and its purges against the configured registry and store.

The command runs in this process (Typer's runner, in a worker thread since it starts its own
event loop) so that it reads the test's clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from bigupload.cli.sweep import sweep
from bigupload.config import Settings
from bigupload.storage.base import Storage, UploadNotFound
from bigupload.storage.local import LocalStorage
from bigupload.storage.s3 import S3Storage
from tests.conftest import SECRET, TEST_BASE_URL, Caller
from tests.expiry.conftest import PENDING_EXPIRY, Harness
from tests.expiry.helpers import data, parts_of, pending_parts, pending_put, whole
from tests.support.clock import Clock
from tests.support.moto import MotoServer
from tests.support.net import free_port


@pytest.fixture(params=["local", "s3-moto"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, moto_server: MotoServer) -> Storage:
    """The store the command builds from the settings: the app's data directory's for local."""
    if request.param == "local":
        return LocalStorage(tmp_path / "data" / "store", public_url=TEST_BASE_URL, secret=SECRET)
    store: Storage = request.getfixturevalue("moto_store")
    return store


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The command configures the ``bigupload`` logger for a process; put it back."""
    logger = logging.getLogger("bigupload")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def command_env(settings: Settings, storage: Storage, moto: MotoServer) -> dict[str, str]:
    env = {
        "BIGUPLOAD_DATA_DIR": str(settings.data_dir),
        "BIGUPLOAD_DATABASE_URL": settings.effective_database_url,
        "BIGUPLOAD_SECRET_KEY": SECRET,
        "BIGUPLOAD_PUBLIC_URL": TEST_BASE_URL,
        "BIGUPLOAD_PENDING_EXPIRY_SECONDS": str(settings.pending_expiry_seconds),
        "BIGUPLOAD_LOG_LEVEL": "INFO",
    }
    if isinstance(storage, S3Storage):
        env |= {
            "BIGUPLOAD_STORAGE": "s3",
            "BIGUPLOAD_S3_BUCKET": storage.bucket,
            "BIGUPLOAD_S3_ENDPOINT_URL": moto.endpoint_url,
            "BIGUPLOAD_S3_REGION": "us-east-1",
            "BIGUPLOAD_S3_ADDRESSING_STYLE": "path",
        }
    return env


async def run_sweep(env: dict[str, str], *args: str) -> Result:
    app = typer.Typer()
    app.command()(sweep)
    runner = CliRunner()

    def invoke() -> Result:
        return runner.invoke(app, list(args), env=env)

    return await asyncio.to_thread(invoke)


async def test_the_command_sweeps_purges_and_says_what_it_did(
    test_clock: Clock,
    alice: Caller,
    app: FastAPI,
    harness: Harness,
    store_http: httpx.AsyncClient,
    moto_server: MotoServer,
    restore_logging: None,
) -> None:
    env = command_env(app.state.settings, harness.storage, moto_server)
    stale_put = await pending_put(alice, store_http, data(60))
    stale_parts = await pending_parts(alice, store_http)
    kept = await whole(alice, store_http, data(61))
    test_clock.advance(seconds=PENDING_EXPIRY + 1)

    result = await run_sweep(env)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert result.stdout.splitlines() == [
        "expired 2 pending and 0 unconfirmed file(s), aborted 0 orphan multipart upload(s); "
        "ran 2 purge job(s)"
    ]
    assert "sweep: expired_pending=2" in result.stderr
    assert "Traceback" not in result.stderr

    assert await harness.stored_bytes(stale_put["key"]) is None
    with pytest.raises(UploadNotFound):
        await parts_of(harness.storage, stale_parts)
    assert await harness.stored_bytes(kept["key"]) == data(61)
    assert {j.status for j in await harness.jobs()} == {"done"}

    again = await run_sweep(env, "--json")
    assert again.exit_code == 0, (again.stdout, again.stderr, again.exception)
    assert json.loads(again.stdout) == {
        "expired_pending": 0,
        "expired_unconfirmed": 0,
        "orphan_uploads_aborted": 0,
        "leftover_files_removed": 0,
        "leftover_bytes_freed": 0,
        "jobs_pruned": 0,
        "events_pruned": 0,
        "errors": [],
        "store_unreachable": False,
        "purges_run": 0,
        "purges_waiting": 0,
    }


@pytest.mark.parametrize("storage", ["local"], indirect=True)
async def test_an_unreachable_store_exits_1_and_still_expires_records(
    test_clock: Clock,
    alice: Caller,
    app: FastAPI,
    harness: Harness,
    moto_server: MotoServer,
    restore_logging: None,
) -> None:
    ticket = await pending_put(alice, alice.http, data(62))
    test_clock.advance(seconds=PENDING_EXPIRY + 1)
    env = command_env(app.state.settings, harness.storage, moto_server) | {
        "BIGUPLOAD_STORAGE": "s3",
        "BIGUPLOAD_S3_BUCKET": "nowhere",
        "BIGUPLOAD_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "BIGUPLOAD_S3_REGION": "us-east-1",
    }

    result = await run_sweep(env, "--json")
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["store_unreachable"] is True
    assert report["expired_pending"] == 1
    assert report["purges_run"] == 0
    assert report["errors"][0].startswith("could not list multipart uploads: S3 is unreachable")
    assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "expired"
    # The purge waits in the queue for a process that reaches the store.
    (job,) = await harness.jobs()
    assert (job.status, job.attempts) == ("queued", 0)
    assert await harness.stored_bytes(ticket["key"]) == data(62)
