"""The webhook receiver and the runner delivering to it (webhook and delivery-log tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI

from bigupload.jobs.runner import JobRunner
from bigupload.notifications.dispatch import DISPATCH
from bigupload.notifications.webhooks import WEBHOOK, close_http_client
from tests.notifications.test_webhooks import Hooks, Receiver
from tests.support.clock import Clock


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
async def hooks(app: FastAPI, test_clock: Clock, receiver: Receiver) -> AsyncIterator[Hooks]:
    runner = JobRunner(
        sessionmaker=app.state.sessionmaker,
        storage=app.state.storage,
        settings=app.state.settings,
        kinds={"webhook": WEBHOOK},
        periodics=[DISPATCH],
        worker_id="test-worker",
    )
    yield Hooks(app, runner, test_clock, receiver)
    await close_http_client()
