"""The runner while the registry is unavailable: it keeps polling, says so once, and recovers.

A registry locked by another process fails every claim until the lock goes; that is an outage
to wait out, not a bug, so it is one WARNING line without a traceback, not one a poll.
"""

from __future__ import annotations

from pathlib import Path

from bigupload import migrate
from bigupload.db import create_engine, create_sessionmaker
from bigupload.jobs.kinds import JobContext, JobKind
from bigupload.jobs.queue import enqueue
from bigupload.jobs.runner import JobRunner
from bigupload.storage.local import LocalStorage
from tests.api.test_registry_down import locked_by_another_process
from tests.conftest import make_settings
from tests.jobs.conftest import LogRecords, eventually


async def test_a_locked_registry_is_one_warning_not_a_traceback_a_poll(
    tmp_path: Path, job_logs: LogRecords
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}"
    engine = create_engine(url, timeout=0.1)
    await migrate.upgrade(engine)
    sessionmaker = create_sessionmaker(engine)
    ran: list[int] = []

    async def handler(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    runner = JobRunner(
        sessionmaker=sessionmaker,
        storage=LocalStorage(tmp_path / "store", public_url="http://testserver", secret="s" * 40),
        settings=make_settings(tmp_path, url, job_poll_interval=0.02),
        kinds={"note": JobKind("note", handler)},
        worker_id="w-outage",
    )
    try:
        with locked_by_another_process(tmp_path / "registry.db"):
            await runner.start()
            await eventually(lambda: runner.stats.rounds >= 5, "five claim rounds")
            outage = [r for r in job_logs.records if "registry is unavailable" in r.getMessage()]
            assert len(outage) == 1
            assert "(locked)" in outage[0].getMessage()
            assert all(r.exc_info is None for r in job_logs.records)
        async with sessionmaker() as session, session.begin():
            assert await enqueue(session, "note", {}, max_attempts=1)
        await eventually(lambda: len(ran) == 1, "the job to run once the lock is gone")
        assert any("answers again" in r.getMessage() for r in job_logs.records)
    finally:
        await runner.stop(timeout=1.0)
        await engine.dispose()
