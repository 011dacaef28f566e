"""The request metrics the edge middleware records: one counter and one histogram child per
route template, method and status, looked up once and kept (a dict lookup per request)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import Counter, Histogram
from starlette.types import Scope

from bigupload.metrics.catalog import HTTP_DURATION, HTTP_REQUESTS, method_label

#: The route label of a request no route matched (a 404, or a head refused at the edge).
UNMATCHED = "unmatched"

_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
#: The template of each route included under a prefix: FastAPI puts the route itself, whose
#: path lacks the prefix, in the request's scope.
_templates: dict[int, str] = {}


def included(router: APIRouter, prefix: str) -> None:
    """Label ``router``'s routes with ``prefix`` before their paths (as it was included)."""
    for route in router.routes:
        path = getattr(route, "path", None)
        if path is not None:
            _templates[id(route)] = prefix + path


def record_request(scope: Scope, status: int, seconds: float) -> None:
    route = scope.get("route")
    template = _templates.get(id(route)) or getattr(route, "path", None) or UNMATCHED
    method = method_label(scope["method"])
    key = (template, method, status)
    pair = _children.get(key)
    if pair is None:
        pair = _children[key] = (
            HTTP_REQUESTS.labels(template, method, str(status)),
            HTTP_DURATION.labels(template, method),
        )
    pair[0].inc()
    pair[1].observe(seconds)
