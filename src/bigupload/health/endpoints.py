"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bigupload import __version__
from bigupload.dependencies import StorageDep
from bigupload.health.database import probe
from bigupload.json_body import ApiRoute
from bigupload.storage.base import StorageError

router = APIRouter(prefix="/health", tags=["health"], route_class=ApiRoute)


@router.get("", summary="Liveness: the process answers")
async def live() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get(
    "/ready",
    summary="Readiness: the registry and the store answer",
    description="503 when either fails. `checks.database` is `ok` or `error: locked` (another "
    "process holds the registry's lock), `error: read_only`, `error: unreachable`, "
    "`error: disk_full` or `error: busy`; `checks.storage` is `ok` or `error: <why>`.",
)
async def ready(request: Request, storage: StorageDep) -> JSONResponse:
    checks: dict[str, str] = {}
    checks["database"] = await probe(
        request.app.state.engine, request.app.state.settings.effective_database_url
    )
    try:
        await storage.check()
        checks["storage"] = "ok"
    except StorageError as exc:
        checks["storage"] = f"error: {exc}"
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
