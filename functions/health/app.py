"""The health function: liveness (`/health`) and readiness (`/health/ready`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from docent import __version__, snapstart
from docent.aws import http_handler
from docent.health import readiness
from docent.web import ServicesDep, create_app

router = APIRouter(tags=["health"])


@router.get("/health")
async def get_health() -> dict[str, Any]:
    """Liveness: the process answers. Calls no dependency."""
    return {"status": "ok", "version": __version__}


@router.get("/health/ready")
async def get_ready(services: ServicesDep) -> JSONResponse:
    """Readiness: each configured backend checked with a short timeout."""
    report = await readiness(services)
    return JSONResponse(report, status_code=503 if report["status"] == "down" else 200)


app = create_app(router, title="Docent health")
snapstart.register("health")  # SnapStart: warm before the snapshot, fresh after
# Buffered HTTP invocations (API Gateway, `sam local invoke`): Mangum without lifespan.
handler = http_handler(app)
