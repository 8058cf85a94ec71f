"""One ASGI app with every function's routes: what `make run` and the Spaces image serve."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from docent.config import Settings, get_settings
from docent.logs import get_logger
from docent.mcp_server import router as mcp_router
from docent.openai_api import router as openai_router
from docent.services import Services, get_services
from docent.web import create_app
from functions.chat.app import router as chat_router
from functions.health.app import router as health_router
from functions.ingest.app import router as ingest_router
from functions.web import router as web_router

log = logging.getLogger("docent")


async def ingest_sample_corpus(services: Services) -> int:
    """On an empty index with `SAMPLE_CORPUS=docent`, ingest Docent's own docs."""
    from docent.corpus import docent_docs, find_files, read_documents

    if services.settings.sample_corpus != "docent" or await services.store.total() > 0:
        return 0
    folder = docent_docs()
    files = find_files([folder]) if folder else []
    if not files:
        log.warning("Docent's own docs are not installed: the index stays empty")
        return 0
    result = await services.ingestor.ingest(list(read_documents(files)))
    log.info("ingested the sample corpus", extra=result.as_dict())
    return result.chunks


def _lifespan(
    services: Callable[[], Services], settle: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ingest_sample_corpus(services())
        if settle:
            from docent.serving import settle_heap

            settle_heap(services().settings)
        yield
        await services().aclose()

    return lifespan


def build_app(
    settings: Settings | None = None, services: Services | None = None, *, settle: bool = False
) -> FastAPI:
    """The bundled app; tests pass their own settings and services. With `settle`, the server's
    start-up ends with `settle_heap` (the process is the server's own: not a test's)."""
    app = create_app(
        chat_router, openai_router, mcp_router, ingest_router, health_router, web_router,
        settings=settings, services=services,
    )  # fmt: skip
    # JSON lines on stdout for every `docent.*` logger (Lambda's handlers do the same), so a
    # server (`docent serve`, the Spaces image) logs as the README says.
    get_logger((settings or get_settings()).log_level)
    app.router.lifespan_context = _lifespan(lambda: services or get_services(), settle)
    return app


app = build_app(settle=True)
