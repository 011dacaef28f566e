"""What the service says when it starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bigupload.app import create_app
from bigupload.storage.s3 import S3Storage, build_client
from tests.conftest import make_settings
from tests.support.net import free_port


async def test_start_warns_when_the_store_is_unreachable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    client = build_client(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    app = create_app(settings, storage=S3Storage(client, "nowhere"))
    with caplog.at_level(logging.WARNING, logger="bigupload"):
        async with app.router.lifespan_context(app):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("the store is not usable yet (S3 is unreachable") for w in warnings)


async def test_start_is_quiet_when_the_store_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    app = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="bigupload"):
        async with app.router.lifespan_context(app):
            pass
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
