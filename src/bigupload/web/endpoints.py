"""``GET /``: the web page, its hashed assets and its icon, with the headers a page needs.

The page is built from ``web/`` by ``make web`` into ``static/`` (committed, so an installed
package needs no Node.js). Its scripts reach only this service and the store the signed URLs
point at: the Content-Security-Policy allows exactly those, and ``Referrer-Policy:
no-referrer`` keeps signed URLs out of ``Referer`` headers. Served only when
``settings.web_page`` is on.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, PlainTextResponse

from bigupload.config import Settings
from bigupload.dependencies import SettingsDep
from bigupload.errors import NotFound
from bigupload.json_body import ApiRoute

router = APIRouter(include_in_schema=False, route_class=ApiRoute)

#: The built page (``make web`` writes it).
STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_DIR = STATIC_DIR / "assets"

#: Asset names carry a hash of their content: a name never changes meaning.
IMMUTABLE = "public, max-age=31536000, immutable"
NOT_BUILT = (
    "The bigupload web page is not built in this copy of bigupload.\n"
    "From a source checkout, run `make web` (needs Node.js 20 and npm) and restart;\n"
    "the API under /api/v1 works without it.\n"
)

SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def store_origins(settings: Settings) -> list[str]:
    """The origins the page's uploads and downloads are sent to, besides its own."""
    if settings.storage == "s3":
        if not settings.s3_endpoint_url:
            return ["https://*.amazonaws.com"]
        parts = urlsplit(settings.s3_endpoint_url)
        origins = [f"{parts.scheme}://{parts.netloc}"]
        if settings.s3_addressing_style == "virtual":
            origins.append(f"{parts.scheme}://*.{parts.netloc}")
        return origins
    # The local store signs URLs under the public URL, which may not be the page's own origin.
    parts = urlsplit(settings.effective_public_url)
    return [f"{parts.scheme}://{parts.netloc}"]


def content_security_policy(settings: Settings) -> str:
    connect = " ".join(["'self'", *dict.fromkeys(store_origins(settings))])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            "font-src 'self' data:",
            f"connect-src {connect}",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


def _require_page(settings: Settings) -> None:
    if not settings.web_page:
        raise NotFound("no web page here (BIGUPLOAD_WEB_PAGE is off)")


@router.api_route("/", methods=["GET", "HEAD"])
async def page(settings: SettingsDep) -> Response:
    _require_page(settings)
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return PlainTextResponse(NOT_BUILT, status_code=503, headers=SECURITY_HEADERS)
    return FileResponse(
        index,
        media_type="text/html; charset=utf-8",
        headers={
            **SECURITY_HEADERS,
            "Cache-Control": "no-cache",
            "Content-Security-Policy": content_security_policy(settings),
            "X-Frame-Options": "DENY",
        },
    )


@router.api_route("/assets/{path:path}", methods=["GET", "HEAD"])
async def asset(path: str, settings: SettingsDep) -> Response:
    _require_page(settings)
    found = _lookup(ASSETS_DIR, path)
    if found is None:
        raise NotFound("no such asset")
    return FileResponse(
        found,
        media_type=_media_type(found),
        headers={**SECURITY_HEADERS, "Cache-Control": IMMUTABLE},
    )


@router.api_route("/favicon.svg", methods=["GET", "HEAD"])
@router.api_route("/favicon.ico", methods=["GET", "HEAD"])
async def favicon(settings: SettingsDep) -> Response:
    _require_page(settings)
    icon = STATIC_DIR / "favicon.svg"
    if not icon.is_file():
        raise NotFound("no icon")
    return FileResponse(
        icon,
        media_type="image/svg+xml",
        headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"},
    )


def _lookup(root: Path, path: str) -> Path | None:
    """The file ``path`` names under ``root``, or None; nothing outside ``root`` is ever named."""
    relative = PurePosixPath(path)
    if not path or relative.is_absolute() or "\\" in path or "\x00" in path:
        return None
    if any(part in ("", ".", "..") for part in path.split("/")):
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


def _media_type(path: Path) -> str:
    known = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    if path.suffix in known:
        return known[path.suffix]
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"
