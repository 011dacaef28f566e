"""The application factory: settings, registry, store, routes and error handling in one place."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bigupload import __version__
from bigupload.auth.cache import KeyCache
from bigupload.auth.dependencies import Principal
from bigupload.auth.endpoints import router as session_router
from bigupload.auth.tokens import TokenVerifier
from bigupload.config import Settings, load_settings
from bigupload.db import create_engine, create_sessionmaker
from bigupload.edge import EdgeMiddleware
from bigupload.errors import COMMON_RESPONSES, install_error_handlers
from bigupload.files.endpoints import router as files_router
from bigupload.files.inserter import FileInserter
from bigupload.health.endpoints import router as health_router
from bigupload.jobs.registry import build_runner, close_clients
from bigupload.metrics.endpoint import router as metrics_router
from bigupload.metrics.http import included as metered_routes
from bigupload.notifications.endpoints import router as deliveries_router
from bigupload.notifications.stream import router as events_router
from bigupload.rate_limit import RateLimiter
from bigupload.storage.base import HasLeftovers, Storage, StorageError
from bigupload.storage.factory import build_storage
from bigupload.storage.local import LocalStorage
from bigupload.storage.local.endpoints import router as local_store_router
from bigupload.storage_events.endpoints import router as storage_events_router
from bigupload.storage_events.handler import local_event_sink
from bigupload.uploads.endpoints import router as uploads_router
from bigupload.uppy.endpoints import router as uppy_router
from bigupload.web.docs import router as docs_router
from bigupload.web.endpoints import router as web_router

log = logging.getLogger("bigupload")

#: JSON bodies of the API are small (an upload request is under 9 KiB even with full metadata);
#: the bytes of files never come this way.
API_MAX_BODY_SIZE = 1024 * 1024  # completing 10,000 parts names them all

DESCRIPTION = """
Upload very large files straight into S3-compatible storage through pre-signed URLs.

1. `POST /api/v1/uploads` records the file and answers where to send it (`url`, `headers`).
2. Send the bytes with exactly that method, URL and headers.
3. `POST /api/v1/uploads/{id}/complete` checks the store and marks the file `uploaded`.

Every `/api/v1` and `/s3` route needs `Authorization: Bearer <api key>`, or the web page's session
cookie (`POST /api/v1/session`). The `/s3` routes are the ones Uppy's `@uppy/aws-s3` plugin calls
on Uppy Companion. Errors are `{"error": {"code", "message", "details"}}` with stable codes.
"""


async def _check_store(storage: Storage, settings: Settings) -> None:
    """Warn (never fail) of a store that cannot be used yet, or a bucket not set up for us."""
    from bigupload.storage.s3 import S3Storage
    from bigupload.storage.s3.setup import startup_check

    if not isinstance(storage, S3Storage):
        try:
            await storage.check()
        except StorageError as exc:
            log.warning("the store is not usable yet (%s); /health/ready reports it", exc)
        return
    found = await startup_check(storage.client, storage.bucket, settings)
    if found.unusable:
        log.warning("the store is not usable yet (%s); /health/ready reports it", found.unusable)
    for problem in found.problems:
        log.warning("storage check: %s", problem)
    if found.problems:
        log.warning("storage check: `bigupload storage setup` sets the bucket up for bigupload")


def create_app(settings: Settings | None = None, *, storage: Storage | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _check_store(app.state.storage, settings)
        if isinstance(app.state.storage, HasLeftovers):
            try:  # what uploads cut off by a crash left (the sweeper also removes them)
                await app.state.storage.remove_leftovers()
            except OSError as exc:
                log.warning("could not remove the store's leftover files: %s", exc)
        runner = app.state.job_runner
        if runner is not None:
            await runner.start()
        try:
            yield
        finally:
            if runner is not None:
                await runner.stop()
                await close_clients()
            await app.state.storage.close()
            await app.state.engine.dispose()

    app = FastAPI(
        title="bigupload",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from the package by bigupload.web.docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = create_engine(
        settings.effective_database_url, timeout=settings.database_timeout_seconds
    )
    app.state.sessionmaker = create_sessionmaker(app.state.engine)
    app.state.file_inserter = FileInserter(app.state.sessionmaker)
    app.state.storage = storage if storage is not None else build_storage(settings)
    if settings.local_storage_events and isinstance(app.state.storage, LocalStorage):
        # The local store reports what it stored as S3 would, through the storage-event path.
        app.state.storage.event_sink = local_event_sink(
            sessionmaker=app.state.sessionmaker, storage=app.state.storage, settings=settings
        )
    # Processing, notifications and expiry run in every serving process unless turned off
    # (then `bigupload worker` processes do them); jobs are claimed with row locks.
    app.state.job_runner = (
        build_runner(settings, app.state.sessionmaker, app.state.storage)
        if settings.run_jobs
        else None
    )
    app.state.rate_limiter = RateLimiter(settings.rate_limit, settings.rate_limit_storage)
    app.state.key_cache = KeyCache[Principal](settings.auth_cache_seconds)
    app.state.session_cache = KeyCache[Principal](settings.auth_cache_seconds)
    app.state.sign_in_limiter = RateLimiter(
        settings.session_rate_limit, settings.rate_limit_storage
    )
    app.state.token_verifier = _token_verifier(settings)

    install_error_handlers(app)
    app.add_middleware(
        EdgeMiddleware,
        max_body_size=API_MAX_BODY_SIZE,
        cors_origins=settings.cors_origins,
        metrics=settings.metrics,
    )

    # Each router straight into the app, not nested in an `/api/v1` router: FastAPI matches
    # a request against an included router's routes twice (to choose, then to run), at
    # every level of nesting.
    for api_router in (
        session_router,
        uploads_router,
        files_router,
        events_router,
        deliveries_router,
        storage_events_router,
    ):
        app.include_router(api_router, prefix="/api/v1", responses=COMMON_RESPONSES)
        metered_routes(api_router, "/api/v1")
    app.include_router(uppy_router)
    app.include_router(health_router)
    app.include_router(local_store_router)
    app.include_router(web_router)
    app.include_router(docs_router)
    if settings.metrics:
        app.include_router(metrics_router)
    return app


def _token_verifier(settings: Settings) -> TokenVerifier | None:
    if not (settings.jwt_secret or settings.jwt_jwks_url):
        return None
    assert settings.jwt_audience is not None
    return TokenVerifier(
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        secret=settings.jwt_secret,
        jwks_url=settings.jwt_jwks_url,
        algorithms=settings.jwt_algorithms,
        owner_claim=settings.jwt_owner_claim,
        owner_prefix=settings.jwt_owner_prefix,
    )


def settle_garbage_collector() -> None:
    """Keep the cyclic garbage collector from pausing a serving process for long.

    The objects made at start (FastAPI, SQLAlchemy, pydantic, boto3 and their modules) live as
    long as the process; frozen, the collector never scans them again. Collections of young
    objects are made rarer. Measured by bench/create_upload.py at 64 clients: p99 from about
    160 ms to about 75 ms, and 20 % more requests per second.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def worker_app() -> FastAPI:
    """The app of one worker process of ``bigupload serve --workers N``."""
    from bigupload.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    settle_garbage_collector()
    return app
