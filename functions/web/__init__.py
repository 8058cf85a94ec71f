"""The chat page (`/`), the embeddable widget (`/widget.js`), the insights page (`/admin`) and
`/metrics`: bundle-only routes."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from docent import metrics
from docent.web import AdminDep

STATIC = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/widget.js")
async def widget() -> FileResponse:
    # Cross-origin <script> loads need no CORS; a short cache keeps deploys visible.
    return FileResponse(
        STATIC / "widget.js",
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/admin")
async def admin_page() -> FileResponse:
    # The page itself is public: the admin key is typed into it and sent with its API calls.
    return FileResponse(STATIC / "admin.html", headers={"Cache-Control": "no-cache"})


@router.get("/admin.js")
async def admin_script() -> FileResponse:
    return FileResponse(
        STATIC / "admin.js", media_type="text/javascript", headers={"Cache-Control": "no-cache"}
    )


@router.get("/metrics")
async def get_metrics(_: AdminDep) -> Response:
    """Prometheus text format; scrape with the admin key (`Authorization: Bearer <key>`)."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
