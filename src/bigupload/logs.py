"""Logging set-up and the request log: one line per request, each with a request id (given by
:class:`bigupload.edge.EdgeMiddleware`).

Only the path is logged, never the query string: signed URLs and tokens live there.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from starlette.types import Scope

access_log = logging.getLogger("bigupload.access")
#: The ``X-Request-ID`` a client may choose; any other is replaced by a new id.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JsonFormatter(logging.Formatter):
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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("bigupload")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def log_request(scope: Scope, status: int, duration_ms: float, request_id: str) -> None:
    """The access-log line of one request (the path only, never the query)."""
    owner = scope["state"].get("owner", "-")
    access_log.info(
        "%s %s %d %.1fms owner=%s request_id=%s",
        scope["method"],
        scope["path"],
        status,
        duration_ms,
        owner,
        request_id,
        extra={
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(duration_ms, 1),
            "owner": owner,
        },
    )
