"""``GET /metrics``: the Prometheus text format, for every process of this server.

Not an API route: no API key, no rate limit, not in the OpenAPI document, and not counted in
the request metrics it reports (a scrape would change what the next one reads). With
``METRICS_TOKEN`` set, a scrape must carry ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

import anyio
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from bigupload.config import Settings
from bigupload.errors import Unauthenticated
from bigupload.json_body import ApiRoute
from bigupload.metrics.backlog import Backlog, read_backlog
from bigupload.metrics.collect import drop_dead_processes, multiprocess_directory

log = logging.getLogger("bigupload.metrics")

PATH = "/metrics"
router = APIRouter(route_class=ApiRoute)


@router.get(PATH, include_in_schema=False)
async def metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    check_token(request.headers.get("authorization"), settings.metrics_token)
    backlog = await _backlog(request, settings)
    body = await anyio.to_thread.run_sync(render, backlog)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def check_token(authorization: str | None, token: str | None) -> None:
    """Raise 401 unless ``token`` is unset or ``authorization`` is ``Bearer <token>``."""
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthenticated("/metrics needs Authorization: Bearer <METRICS_TOKEN>")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthenticated("the metrics token is wrong", code="invalid_metrics_token")


def render(*extra: Collector) -> bytes:
    """Every metric of this process (or of every process of the server), then ``extra``."""
    directory = multiprocess_directory()
    if directory is None:
        body = generate_latest(REGISTRY)
    else:
        drop_dead_processes(directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, directory)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    if extra:
        own = CollectorRegistry(auto_describe=True)
        for collector in extra:
            own.register(collector)
        body += generate_latest(own)
    return body


async def _backlog(request: Request, settings: Settings) -> Backlog:
    state = request.app.state
    kinds = getattr(state, "job_kind_names", None)
    if kinds is None:
        from bigupload.jobs.registry import job_kinds

        kinds = state.job_kind_names = frozenset(job_kinds(settings))
    try:
        return await asyncio.wait_for(
            read_backlog(state.sessionmaker, kinds), settings.database_timeout_seconds
        )
    except Exception as exc:  # a scrape still answers what the processes counted
        log.warning("metrics: could not read the job backlog: %s", exc)
        return Backlog(())
