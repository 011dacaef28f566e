"""Cross-origin access to the API (``/api/``, ``/s3/``) for pages of the configured origins.

Only listed origins get CORS headers, with credentials allowed (the session cookie); any other
origin, and every path outside the API (``/health``, the local store's ``/store`` routes, which
answer their own preflights), gets none: such requests go to the app untouched.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

PATH_PREFIXES = ("/api/", "/s3/")
ALLOW_METHODS = ("GET", "POST", "PUT", "DELETE")
ALLOW_HEADERS = ("Authorization", "Content-Type", "X-CSRF-Token", "Last-Event-ID", "Accept")
EXPOSE_HEADERS = ("Retry-After", "X-Request-ID")
MAX_AGE_SECONDS = 600


class ApiCORSMiddleware:
    def __init__(
        self, app: ASGIApp, *, origins: Iterable[str], prefixes: tuple[str, ...] = PATH_PREFIXES
    ) -> None:
        self.app = app
        self.origins = frozenset(origin.lower() for origin in origins)
        self.prefixes = prefixes
        self.cors = CORSMiddleware(
            app,
            allow_origins=sorted(self.origins),
            allow_credentials=True,
            allow_methods=ALLOW_METHODS,
            allow_headers=ALLOW_HEADERS,
            expose_headers=EXPOSE_HEADERS,
            max_age=MAX_AGE_SECONDS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            origin = Headers(scope=scope).get("origin")
            if origin is not None and origin in self.origins:
                await self.cors(scope, receive, send)
                return
        await self.app(scope, receive, send)
