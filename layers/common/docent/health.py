"""Readiness: each configured backend checked in parallel, each with a short timeout.

A Qdrant server and a model server are probed over plain HTTP, so the health function never
imports qdrant_client or openai (their imports alone cost seconds of cold start). The embedded
store's disk is checked by its free space alone: a full disk degrades readiness (writes get 507,
reads go on) without the probe touching the store's files.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from docent.errors import InsufficientStorage
from docent.services import Services

if TYPE_CHECKING:
    from docent.edge import EdgeStore

Check = Callable[[], Awaitable[None]]


async def _http_ok(url: str, headers: dict[str, str], timeout_s: float) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.get(url, headers=headers)
    if response.status_code >= 400:
        raise RuntimeError(f"HTTP {response.status_code}")


async def _room(store: EdgeStore) -> None:
    """Raise when the embedded store's disk has no room for a write (statvfs, not the store)."""
    if not store.disk()["ok"]:
        raise InsufficientStorage()


def checks(services: Services) -> dict[str, tuple[Check, bool]]:
    """name -> (probe, critical). A critical failure means Docent cannot answer at all."""
    settings = services.settings
    timeout = settings.ready_timeout_s
    found: dict[str, tuple[Check, bool]] = {}
    if settings.qdrant_url:
        headers = {"api-key": settings.qdrant_api_key} if settings.qdrant_api_key else {}
        url = settings.qdrant_url.rstrip("/") + "/readyz"
        found["vectors"] = (lambda: _http_ok(url, headers, timeout), True)
    else:
        from docent.edge import EdgeStore

        store = services.store
        found["vectors"] = (store.ping, True)
        if isinstance(store, EdgeStore):
            # Reads go on when the disk is full, so low disk degrades, it does not take Docent down.
            found["disk"] = (lambda: _room(store), False)
    if settings.store_backend != "memory":
        found["store"] = (services.kv.ping, False)
    if settings.llm_configured:
        base = (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/")
        auth = (
            {"Authorization": f"Bearer {settings.openai_api_key}"}
            if settings.openai_api_key
            else {}
        )
        found["models"] = (lambda: _http_ok(base + "/models", auth, timeout), True)
    return found


async def _probe(check: Check, timeout_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout_s)
        ok, error = True, None
    except TimeoutError:
        ok, error = False, "timeout"
    except Exception as exc:
        # The type only: messages can carry internal URLs.
        ok, error = False, type(exc).__name__
    result: dict[str, Any] = {
        "ok": ok,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if error:
        result["error"] = error
    return result


async def readiness(services: Services) -> dict[str, Any]:
    """`{"status": "ok|degraded|down", "checks": {...}}` for every configured backend."""
    found = checks(services)
    timeout = services.settings.ready_timeout_s
    results = await asyncio.gather(*(_probe(check, timeout) for check, _ in found.values()))
    report = dict(zip(found, results, strict=True))
    if all(r["ok"] for r in results):
        status = "ok"
    elif any(not r["ok"] and found[name][1] for name, r in report.items()):
        status = "down"
    else:
        status = "degraded"
    return {"status": status, "checks": report}
