"""The health function: liveness (`/health`) and readiness (`/health/ready`)."""

from __future__ import annotations

import gc

# A cold start's imports allocate hundreds of thousands of objects that live as long as the
# process: collecting while they load only scans them again and again (about 7% of the
# function's first-response CPU). Collection resumes at the end of this module.
gc.disable()

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from docent import __version__, snapstart
from docent.aws import http_handler
from docent.health import readiness
from docent.web import ServicesDep, create_app

router = APIRouter(tags=["health"])


# The response is described, not modelled: a response model costs FastAPI a pydantic schema
# and its import of pydantic.v1 (to refuse v1 models), a tenth of the function's cold start.
_LIVENESS = {
    "type": "object",
    "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
    "required": ["status", "version"],
}


@router.get(
    "/health",
    response_model=None,
    responses={200: {"content": {"application/json": {"schema": _LIVENESS}}}},
)
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
# What the imports built is permanent: frozen, later collections never scan it again.
gc.freeze()
gc.enable()
