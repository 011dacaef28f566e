"""A worker process for tests/jobs/test_processes.py: a JobRunner with one test kind, "effect".

Run as ``python tests/jobs/job_worker.py`` with the environment:

- ``JOB_WORKER_DATABASE_URL``: the registry (migrated, with a ``job_effects`` table);
- ``JOB_WORKER_LOG``: a file this process appends ``ready <pid>`` to once its runner runs, and
  ``start <job id> <pid>`` to when it starts a job;
- ``JOB_WORKER_BLOCK_ON`` (optional): a job id on which the handler blocks forever after
  logging ``start``;
- ``BIGUPLOAD_*`` settings as usual (``BIGUPLOAD_JOB_LEASE_SECONDS``, for instance).

The handler inserts ``(job id, worker id)`` into ``job_effects`` and finishes the job in the same
transaction. SIGTERM stops the runner (running jobs get 5 seconds) and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from sqlalchemy import text

from bigupload.config import load_settings
from bigupload.db import create_engine, create_sessionmaker
from bigupload.jobs.kinds import JobContext, JobKind
from bigupload.jobs.runner import JobRunner
from bigupload.storage.local import LocalStorage

LOG = Path(os.environ["JOB_WORKER_LOG"])
BLOCK_ON = int(os.environ.get("JOB_WORKER_BLOCK_ON") or 0)


def log_line(line: str) -> None:
    """Append one line at once (O_APPEND: lines of several processes never interleave)."""
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def effect(ctx: JobContext) -> None:
    log_line(f"start {ctx.job_id} {os.getpid()}")
    if ctx.job_id == BLOCK_ON:
        await asyncio.Event().wait()  # until killed
    async with ctx.sessionmaker() as session, session.begin():
        await session.execute(
            text("INSERT INTO job_effects (job_id, worker) VALUES (:job_id, :worker)"),
            {"job_id": ctx.job_id, "worker": ctx.worker_id},
        )
        await ctx.finish(session, {"pid": os.getpid()})


async def main() -> None:
    data_dir = LOG.parent / f"worker-{os.getpid()}"
    settings = load_settings(
        database_url=os.environ["JOB_WORKER_DATABASE_URL"],
        data_dir=data_dir,
        secret_key="worker-secret-" + "x" * 40,
        public_url="http://127.0.0.1:9",
    )
    engine = create_engine(settings.effective_database_url)
    storage = LocalStorage(
        data_dir / "store", public_url="http://127.0.0.1:9", secret="worker-secret-" + "x" * 40
    )
    runner = JobRunner(
        sessionmaker=create_sessionmaker(engine),
        storage=storage,
        settings=settings,
        kinds={"effect": JobKind("effect", effect)},
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await runner.start()
    log_line(f"ready {os.getpid()}")
    await stop.wait()
    await runner.stop(timeout=5)
    await engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    asyncio.run(main())
