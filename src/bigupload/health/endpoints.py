"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from bigupload import __version__
from bigupload.dependencies import SessionDep, StorageDep
from bigupload.json_body import ApiRoute
from bigupload.storage.base import StorageError

router = APIRouter(prefix="/health", tags=["health"], route_class=ApiRoute)


@router.get("", summary="Liveness: the process answers")
async def live() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/ready", summary="Readiness: the registry and the store answer")
async def ready(session: SessionDep, storage: StorageDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        await storage.check()
        checks["storage"] = "ok"
    except StorageError as exc:
        checks["storage"] = f"error: {exc}"
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
