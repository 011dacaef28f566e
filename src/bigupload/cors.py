"""Cross-origin access to the API (``/api/``, ``/s3/``) for pages of the configured origins.

Only listed origins get CORS headers, with credentials allowed (the session cookie); any other
origin, and every path outside the API (``/health``, the local store's ``/store`` routes, which
answer their own preflights), gets none: such requests go to the app untouched.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

PATH_PREFIXES = ("/api/", "/s3/")
ALLOW_METHODS = ("GET", "POST", "PUT", "DELETE")
ALLOW_HEADERS = ("Authorization", "Content-Type", "X-CSRF-Token", "Last-Event-ID", "Accept")
EXPOSE_HEADERS = ("Retry-After", "X-Request-ID")
MAX_AGE_SECONDS = 600


def api_cors(app: ASGIApp, origins: Iterable[str]) -> CORSMiddleware:
    """Starlette's CORS middleware for the API's requests from one of ``origins`` (lower case);
    :class:`bigupload.edge.EdgeMiddleware` sends it only those."""
    return CORSMiddleware(
        app,
        allow_origins=sorted(origins),
        allow_credentials=True,
        allow_methods=ALLOW_METHODS,
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        max_age=MAX_AGE_SECONDS,
    )
