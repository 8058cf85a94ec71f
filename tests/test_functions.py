"""Each function's app works alone, and the bundle serves the union of their routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from docent.config import load_settings
from docent.services import Services
from tests.conftest import ADMIN_KEY, serve


def routes(app: object) -> set[tuple[str, str]]:
    """(method, path) of every API route, as the app's OpenAPI schema lists them."""
    paths = app.openapi()["paths"]  # type: ignore[attr-defined]
    return {(method.upper(), path) for path, item in paths.items() for method in item}


def test_the_bundle_serves_every_function_route() -> None:
    from functions.bundle import app as bundle
    from functions.chat.app import app as chat
    from functions.health.app import app as health
    from functions.ingest.app import app as ingest

    assert routes(bundle) == routes(chat) | routes(ingest) | routes(health)
    assert routes(chat) == {
        ("POST", "/chat"),
        ("POST", "/feedback"),
        ("POST", "/mcp"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model}"),
    }
    assert routes(health) == {("GET", "/health"), ("GET", "/health/ready")}


@pytest.mark.parametrize("name", ["chat", "ingest", "health"])
def test_each_function_app_serves_alone(tmp_path: Path, name: str) -> None:
    import importlib

    import httpx

    module = importlib.import_module(f"functions.{name}.app")
    settings = load_settings(qdrant_path=str(tmp_path), admin_api_keys=(ADMIN_KEY,))
    # What `create_app(settings=..., services=...)` records: this app serves these.
    module.app.state.settings, module.app.state.services = settings, Services(settings)
    try:
        with serve(module.app) as url, httpx.Client(base_url=url) as client:
            health = client.get("/health")
            chat = client.post("/chat", json={"question": "anything"})
            listing = client.get("/documents", headers={"X-API-Key": ADMIN_KEY})
    finally:
        module.app.state.settings = module.app.state.services = None
    # The chat app answers /health too: the Web Adapter's readiness check (not in its schema).
    assert (health.status_code == 200) == (name in ("health", "chat"))
    assert (chat.status_code == 200) == (name == "chat")
    assert (listing.status_code == 200) == (name == "ingest")
    for response in (health, chat, listing):
        assert response.status_code in (200, 404)
