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


# Each file with its cache policy: the pages and the admin script are always revalidated;
# cross-origin <script> loads of the widget need no CORS, and a short cache keeps deploys visible.
# The admin page itself is public: the admin key is typed into it and sent with its API calls.
FILES = {
    "/": ("index.html", "no-cache"),
    "/widget.js": ("widget.js", "public, max-age=300"),
    "/admin": ("admin.html", "no-cache"),
    "/admin.js": ("admin.js", "no-cache"),
}


def _serve(path: str, name: str, cache_control: str) -> None:
    media_type = "text/javascript" if name.endswith(".js") else None

    async def static_file() -> FileResponse:
        return FileResponse(
            STATIC / name, media_type=media_type, headers={"Cache-Control": cache_control}
        )

    static_file.__name__ = f"static_{name.replace('.', '_')}"
    router.add_api_route(path, static_file, methods=["GET"])


for _path, (_name, _cache) in FILES.items():
    _serve(_path, _name, _cache)


@router.get("/metrics")
async def get_metrics(_: AdminDep) -> Response:
    """Prometheus text format; scrape with the admin key (`Authorization: Bearer <key>`)."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
