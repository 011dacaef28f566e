"""``bigupload worker``: background jobs, and storage events from SQS, without serving."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from bigupload.cli.common import fail, first_line, settings_or_exit

if TYPE_CHECKING:
    from bigupload.config import Settings

log = logging.getLogger("bigupload.worker")


async def _work(settings: Settings, queue_url: str | None, wait_seconds: int) -> None:
    import asyncio

    from bigupload.cli.registry import prepared_engine
    from bigupload.db import create_sessionmaker
    from bigupload.jobs.registry import build_runner, close_clients
    from bigupload.storage.factory import build_storage
    from bigupload.storage_events.handler import event_handler
    from bigupload.storage_events.sqs import SqsConsumer

    engine = await prepared_engine(settings)
    storage = build_storage(settings)
    sessionmaker = create_sessionmaker(engine)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = build_runner(settings, sessionmaker, storage)
    listener = None
    if settings.metrics and settings.metrics_port is not None:
        from bigupload.config import ConfigError
        from bigupload.metrics.listener import start_listener

        try:
            listener = start_listener(settings.host, settings.metrics_port, settings.metrics_token)
        except OSError as exc:
            raise ConfigError(
                f"BIGUPLOAD_METRICS_PORT: cannot listen on {settings.host}:"
                f"{settings.metrics_port}: {exc.strerror or exc}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    consumer = None
    if queue_url:
        handle = event_handler(
            sessionmaker=sessionmaker, storage=storage, settings=settings, source="sqs"
        )
        consumer = SqsConsumer(settings, queue_url, handle, wait_seconds=wait_seconds)
    try:
        await runner.start()
        if consumer is not None:
            await consumer.run(stop)
        await stop.wait()
    finally:
        await runner.stop()
        if listener is not None:
            listener.shutdown()
        await close_clients()
        with contextlib.suppress(Exception):
            await storage.close()
        await engine.dispose()


def worker(
    sqs_queue_url: Annotated[
        str | None,
        typer.Option(
            help="Also consume S3 event notifications from this SQS queue (AWS deployments); "
            "default BIGUPLOAD_SQS_QUEUE_URL."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=64, help="Jobs run at once [default: 4].")
    ] = None,
    sqs_wait_seconds: Annotated[
        int, typer.Option(min=0, max=20, help="SQS long-poll time.", hidden=True)
    ] = 20,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve GET /metrics on this port (on BIGUPLOAD_HOST); default "
            "BIGUPLOAD_METRICS_PORT, none: no metrics.",
        ),
    ] = None,
) -> None:
    """Run processing, notifications and expiry until stopped (Ctrl-C or SIGTERM).

    Any number of workers and servers may run side by side on one registry: each job is claimed
    by one of them at a time. `bigupload serve` runs the same jobs itself unless
    BIGUPLOAD_RUN_JOBS=false.
    """
    import asyncio

    from sqlalchemy.exc import DBAPIError, OperationalError

    from bigupload.config import ConfigError
    from bigupload.logs import configure_logging

    settings = settings_or_exit(
        job_concurrency=concurrency, sqs_queue_url=sqs_queue_url, metrics_port=metrics_port
    )
    configure_logging(settings.log_level, settings.log_format)
    typer.echo(
        f"bigupload worker: {settings.storage} store"
        + (f", storage events from {settings.sqs_queue_url}" if settings.sqs_queue_url else ""),
        err=True,
    )
    try:
        asyncio.run(_work(settings, settings.sqs_queue_url, sqs_wait_seconds))
    except ConfigError as exc:
        fail(str(exc), code=2)
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(f"cannot use the database: {first_line(exc)}")
