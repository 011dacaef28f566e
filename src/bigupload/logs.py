"""Logging set-up and the request log: one line per request, each with a request id (given by
:class:`bigupload.edge.EdgeMiddleware`).

Only the path is logged, never the query string: signed URLs and tokens live there.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from starlette.types import Scope

access_log = logging.getLogger("bigupload.access")
#: The ``X-Request-ID`` a client may choose; any other is replaced by a new id.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Formatter(logging.Formatter):
    """logging's, but with the date and time of the current second formatted once (the access
    log writes a line per request; ``time.strftime`` was a sixth of its cost)."""

    _cached: tuple[int, str | None, str] = (-1, None, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        cached_second, cached_format, stamp = self._cached
        if second != cached_second or datefmt != cached_format:
            when = self.converter(record.created)
            stamp = time.strftime(datefmt or self.default_time_format, when)
            self._cached = (second, datefmt, stamp)  # one tuple: threads see it whole
        if datefmt or not self.default_msec_format:
            return stamp
        return self.default_msec_format % (stamp, record.msecs)


class JsonFormatter(Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("request_id", "method", "path", "status", "duration_ms", "owner"):
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("bigupload")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def log_request(scope: Scope, status: int, duration_ms: float, request_id: str) -> None:
    """The access-log line of one request (the path only, never the query)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    owner = scope["state"].get("owner", "-")
    # The record made straight, as ``access_log.info`` would make it but for the walk up the
    # stack to find its caller (always here).
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        _LOG_REQUEST_LINE,
        "%s %s %d %.1fms owner=%s request_id=%s",
        (scope["method"], scope["path"], status, duration_ms, owner, request_id),
        None,
        "log_request",
        {
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(duration_ms, 1),
            "owner": owner,
        },
    )
    access_log.handle(record)


_LOG_REQUEST_LINE = log_request.__code__.co_firstlineno
