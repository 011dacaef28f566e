"""What the Uppy route tests share: the stores they run on, the landing job's runner."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from bigupload.jobs.runner import JobRunner
from bigupload.storage.base import Storage
from bigupload.uppy.landing import LANDING, LANDING_KIND
from tests.conftest import LOCAL_AND_MOTO, store_named


@pytest.fixture(params=LOCAL_AND_MOTO)
def storage(request: pytest.FixtureRequest) -> Storage:
    return store_named(request)


@pytest.fixture
def runner(app: FastAPI) -> JobRunner:
    """Runs due landing jobs on demand, as ``bigupload worker`` would."""
    return JobRunner(
        sessionmaker=app.state.sessionmaker,
        storage=app.state.storage,
        settings=app.state.settings,
        kinds={LANDING: LANDING_KIND},
        worker_id="test-worker",
    )
