"""Every kind of job and periodic work bigupload does, as one process's runner needs them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bigupload.config import Settings
from bigupload.jobs.kinds import JobKind, Periodic
from bigupload.jobs.runner import JobRunner
from bigupload.storage.base import Storage


def job_kinds(settings: Settings) -> Mapping[str, JobKind]:
    """Every job kind; raises :class:`~bigupload.config.ConfigError` for a processing step
    that cannot be imported."""
    from bigupload.expiry.purge import PURGE
    from bigupload.notifications.email import EMAIL
    from bigupload.notifications.sns import SNS_PUBLISH
    from bigupload.notifications.webhooks import WEBHOOK
    from bigupload.processing.job import process_kind
    from bigupload.uppy.landing import LANDING_KIND

    kinds = (process_kind(settings), PURGE, WEBHOOK, EMAIL, SNS_PUBLISH, LANDING_KIND)
    return {kind.name: kind for kind in kinds}


def periodics() -> Sequence[Periodic]:
    from bigupload.expiry.sweeper import SWEEP
    from bigupload.notifications.dispatch import DISPATCH

    return (DISPATCH, SWEEP)


def build_runner(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: Storage,
) -> JobRunner:
    return JobRunner(
        sessionmaker=sessionmaker,
        storage=storage,
        settings=settings,
        kinds=job_kinds(settings),
        periodics=periodics(),
    )


async def close_clients() -> None:
    """Close the connections notifications keep open between jobs."""
    from bigupload.notifications.webhooks import close_http_client

    await close_http_client()
