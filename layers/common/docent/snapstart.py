"""Lambda SnapStart: what to do before the snapshot and after each restore.

Before the snapshot, import what the first request needs and build the tiktoken encoding (no
network, no open socket: a connection in the snapshot would be shared, dead, by every restored
copy). After a restore, reseed randomness (retry jitter must differ between the copies) and
forget the clients (`Services.reconnect`), so their connection pools are created anew on first
use.

Python-runtime functions register these through AWS's `snapshot_restore_py` (the runtime calls
them); the streaming chat runs behind the Lambda Web Adapter, in its own process, so the adapter
calls them over HTTP at the paths set by `AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH` and
`AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH` (routes only the adapter can reach).
"""

from __future__ import annotations

import importlib
import logging
import os
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docent.config import Settings

log = logging.getLogger("docent.snapstart")

# What the first request of each function imports, beyond its app module.
FIRST_REQUEST_MODULES: dict[str, tuple[str, ...]] = {
    "chat": (
        "docent.chat",
        "docent.retrieval",
        "docent.generation",
        "docent.sse",
        "httpx",
    ),
    "ingest": ("docent.ingest", "docent.chunking", "docent.parsing", "docent.corpus", "httpx"),
    "health": ("docent.health", "httpx"),
}


def _backend_modules(settings: Settings) -> list[str]:
    modules = ["docent.qdrant", "qdrant_client"] if settings.qdrant_url else ["docent.edge"]
    if settings.store_backend == "upstash":
        modules += ["docent.upstash", "upstash_redis", "upstash_ratelimit"]
    elif settings.store_backend == "redis":
        modules += ["docent.redisstore", "redis"]
    if settings.llm_configured:
        modules += ["docent.llm", "docent.embeddings", "openai"]
    return modules


def warm(function: str, settings: Settings | None = None, *, encoding: bool = True) -> list[str]:
    """Import what `function`'s first request needs under `settings` (the process's by default)
    and (`encoding`) build its token encoding (no network); returns the modules imported."""
    from docent.config import get_settings

    settings = settings or get_settings()
    imported = []
    for name in (*FIRST_REQUEST_MODULES.get(function, ()), *_backend_modules(settings)):
        try:
            importlib.import_module(name)
            imported.append(name)
        except ImportError:  # an optional backend absent from this layer: the request says so
            log.warning("snapstart: %s not importable", name)
    if encoding and function != "health":
        from docent.tokens import encoding_for

        encoding_for(settings.token_model)
    return imported


async def _drop_clients() -> None:
    """Close and forget the process's clients; the next request creates new ones."""
    from docent import aws
    from docent.services import get_services

    await get_services().reconnect()
    aws.reset_s3_client()
    aws.reset_secret_clients()


def before_snapshot(function: str) -> list[str]:
    """The runtime's before-snapshot hook: warm up, then hold no client (no socket)."""
    from docent import aws

    imported = warm(function)
    aws._run(_drop_clients())
    return imported


def after_restore() -> None:
    """The runtime's after-restore hook: reseed randomness, and new clients on first use."""
    from docent import aws

    random.seed(os.urandom(32))
    aws._run(_drop_clients())


def register(function: str) -> bool:
    """Register the hooks with the Python runtime (`snapshot_restore_py`); False when absent."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot, function)
    register_after_restore(after_restore)
    return True


def hook_routes(app: Any, function: str, paths: Iterable[str | None]) -> None:
    """The Web Adapter's two hooks as POST routes, only where their variables name a path."""
    from starlette.responses import Response

    before, after = paths

    async def before_route() -> Response:
        import asyncio

        await asyncio.to_thread(warm, function)
        await _drop_clients()
        return Response(status_code=204)

    async def after_route() -> Response:
        random.seed(os.urandom(32))
        await _drop_clients()
        return Response(status_code=204)

    if before:
        app.add_api_route(before, before_route, methods=["POST"], include_in_schema=False)
    if after:
        app.add_api_route(after, after_route, methods=["POST"], include_in_schema=False)
