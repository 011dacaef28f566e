"""What the expiry tests share: a clock the test moves, the sweeper and purges run on demand."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bigupload.expiry.sweeper import SweepReport, sweep
from bigupload.files.models import FileEvent, FileRecord
from bigupload.jobs.models import Job
from bigupload.storage.base import Storage
from tests.conftest import LOCAL_AND_MOTO, store_named

#: The expiry limits of these tests (the smallest the settings allow).
PENDING_EXPIRY = 3600
CONFIRM_WITHIN = 600


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"pending_expiry_seconds": PENDING_EXPIRY}


@pytest.fixture(params=LOCAL_AND_MOTO)
def storage(request: pytest.FixtureRequest) -> Storage:
    return store_named(request)


@dataclass
class Harness:
    """The app's registry, store and settings, as the sweeper and the job runner see them."""

    app: FastAPI
    storage: Storage
    http: httpx.AsyncClient

    async def sweep(self, storage: Storage | None = None) -> SweepReport:
        return await sweep(
            self.app.state.sessionmaker, storage or self.storage, self.app.state.settings
        )

    async def run_purges(self, storage: Storage | None = None) -> int:
        """Run every purge job that is due, as ``bigupload worker`` would."""
        from bigupload.expiry.purge import PURGE
        from bigupload.jobs.runner import JobRunner

        runner = JobRunner(
            sessionmaker=self.app.state.sessionmaker,
            storage=storage or self.storage,
            settings=self.app.state.settings,
            kinds={PURGE.name: PURGE},
        )
        return await runner.run_until_idle()

    async def record(self, file_id: str) -> FileRecord:
        async with self.app.state.sessionmaker() as session, session.begin():
            found: FileRecord | None = await session.get(FileRecord, uuid.UUID(file_id))
        assert found is not None
        return found

    async def events(self, file_id: str) -> list[tuple[str | None, str, str | None]]:
        async with self.app.state.sessionmaker() as session, session.begin():
            rows = (
                await session.execute(
                    select(FileEvent)
                    .where(FileEvent.file_id == uuid.UUID(file_id))
                    .order_by(FileEvent.id)
                )
            ).scalars()
            found = [(e.from_status, e.to_status, e.reason) for e in rows]
        return found

    async def jobs(self, kind: str = "purge") -> list[Job]:
        async with self.app.state.sessionmaker() as session, session.begin():
            rows = (
                await session.execute(select(Job).where(Job.kind == kind).order_by(Job.id))
            ).scalars()
            found = list(rows)
        return found

    async def stored_bytes(self, key: str) -> bytes | None:
        """The object's bytes as a download would give them, or ``None`` if none is stored."""
        if await self.storage.stat(key) is None:
            return None
        link = self.storage.presign_get(
            key, filename="f", content_type="application/octet-stream", expires_in=300
        )
        response = await self.http.get(link.url, headers=link.headers)
        assert response.status_code == 200, response.text
        return response.content


@pytest.fixture
def harness(app: FastAPI, storage: Storage, store_http: httpx.AsyncClient) -> Harness:
    return Harness(app, storage, store_http)
