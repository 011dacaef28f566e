"""What the service says when it starts."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from bigupload.app import create_app
from bigupload.storage.s3 import S3Storage, build_client, setup
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


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_start_names_what_the_bucket_lacks_and_is_quiet_once_set_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, moto_store: S3Storage
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    app = create_app(settings, storage=moto_store)
    with caplog.at_level(logging.WARNING, logger="bigupload"):
        async with app.router.lifespan_context(app):
            pass
    assert _warnings(caplog) == [
        "storage check: CORS: the bucket has no CORS rule bigupload-uploads: browsers on "
        "http://testserver cannot upload to it",
        "storage check: lifecycle: the bucket has no lifecycle rule "
        "bigupload-abort-incomplete-uploads: parts of uploads nobody finishes under uploads/ are "
        "kept (and paid for) until aborted by hand",
        "storage check: `bigupload storage setup` sets the bucket up for bigupload",
    ]

    desired = setup.Desired.from_settings(settings)
    setup.apply(
        moto_store.client,
        moto_store.bucket,
        setup.inspect(moto_store.client, moto_store.bucket, desired),
    )
    caplog.clear()
    app = create_app(settings, storage=moto_store)
    with caplog.at_level(logging.WARNING, logger="bigupload"):
        async with app.router.lifespan_context(app):
            pass
    assert _warnings(caplog) == []


async def test_start_gives_up_on_a_store_that_never_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        app = create_app(settings, storage=S3Storage(build_client(endpoint_url=endpoint), "b"))
        with caplog.at_level(logging.WARNING, logger="bigupload"):
            async with app.router.lifespan_context(app):
                pass
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    # The calls' own timeouts, or the check's bound on them all, whichever comes first.
    assert warnings[0].startswith("the store is not usable yet (S3 is unreachable: ")
    assert warnings[0].endswith("; /health/ready reports it")
