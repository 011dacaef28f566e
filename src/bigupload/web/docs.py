"""``GET /docs``: Swagger UI from the package, so the API docs work without the internet.

``make web`` copies Swagger UI (npm ``swagger-ui-dist``) into ``static/assets/`` under hashed
names, listed in ``static/build-info.json``; they are served here whatever
``settings.web_page`` says (the docs are the API's, not the page's).
"""

from __future__ import annotations

import json
from functools import cache

from fastapi import APIRouter, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from bigupload.errors import NotFound
from bigupload.json_body import ApiRoute
from bigupload.web.endpoints import IMMUTABLE, SECURITY_HEADERS, STATIC_DIR

router = APIRouter(include_in_schema=False, route_class=ApiRoute)

DOCS_ASSETS = "/docs/assets"
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@cache
def swagger_files() -> dict[str, str]:
    """``{"js": name, "css": name, "icon": name}``: the files under ``static/`` /docs uses."""
    try:
        info = json.loads((STATIC_DIR / "build-info.json").read_text())
        names = {kind: str(info["swagger_ui"][kind]) for kind in ("js", "css")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    names["icon"] = "favicon.svg"
    return names


@router.get("/docs", response_class=HTMLResponse)
async def docs() -> Response:
    files = swagger_files()
    if not files:
        raise NotFound("the API docs are not built in this copy of bigupload (run `make web`)")
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="bigupload - API docs",
        swagger_js_url=f"{DOCS_ASSETS}/{files['js']}",
        swagger_css_url=f"{DOCS_ASSETS}/{files['css']}",
        swagger_favicon_url=f"{DOCS_ASSETS}/{files['icon']}",
    )
    page.headers.update(SECURITY_HEADERS)
    return page


@router.api_route(f"{DOCS_ASSETS}/{{path:path}}", methods=["GET", "HEAD"])
async def docs_asset(path: str) -> Response:
    # Only the files listed: never any other path under static/.
    if path not in swagger_files().values():
        raise NotFound("no such asset")
    found = STATIC_DIR / path
    if not found.is_file():
        raise NotFound("no such asset")
    cache_control = "public, max-age=86400" if path == "favicon.svg" else IMMUTABLE
    return FileResponse(
        found,
        media_type=_MEDIA_TYPES.get(found.suffix, "application/octet-stream"),
        headers={**SECURITY_HEADERS, "Cache-Control": cache_control},
    )
