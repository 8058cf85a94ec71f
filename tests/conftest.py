"""Shared test setup: Docent served for real (uvicorn on a free port) with per-test settings."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from docent.config import Settings, load_settings
from docent.services import Services

# Hermetic: the machine's environment must not configure the apps under test.
for _name in Settings.model_fields:
    os.environ.pop(_name.upper(), None)

pytest_plugins = [
    "tests.support.servers",
    "tests.support.standins",
    "tests.support.llama",
    "tests.support.protocols",
    "tests.support.qdrant",
    "tests.support.sam",
]

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = FIXTURES / "corpus"
ADMIN_KEY = "admin-test-key"
USER_KEY = "user-test-key"


@contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread; yield its base URL."""
    from tests.support.servers import free_port

    port = port or free_port()
    server = uvicorn.Server(
        # proxy_headers off: uvicorn would otherwise trust X-Forwarded-For from loopback peers.
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@dataclass
class Docent:
    """A running bundled app: its URL, settings and services (for counters)."""

    url: str
    settings: Settings
    services: Services

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def admin(self) -> httpx.Client:
        return self.client(headers={"X-API-Key": ADMIN_KEY})

    def ingest(self, documents: list[dict[str, Any]]) -> dict[str, Any]:
        with self.admin() as client:
            response = client.post("/ingest", json={"documents": documents})
        assert response.status_code == 200, response.text
        return dict(response.json())


def corpus_documents() -> list[dict[str, Any]]:
    return [
        {"id": path.name, "text": path.read_text(), "format": "markdown"}
        for path in sorted(CORPUS.glob("*.md"))
    ]


def parse_sse(text: str) -> list[dict[str, Any]]:
    """The `data:` events of an SSE body, in order."""
    return [
        json.loads(line[len("data:") :]) for line in text.splitlines() if line.startswith("data:")
    ]


_BACKENDS = {"store", "kv", "limiter", "embedder", "answerer"}


@contextmanager
def running_docent(tmp_path: Path, **overrides: Any) -> Iterator[Docent]:
    from functions.bundle import build_app

    values: dict[str, Any] = {
        "qdrant_path": str(tmp_path / "qdrant"),
        "sample_corpus": "",
        "admin_api_keys": (ADMIN_KEY,),
        "api_keys": (USER_KEY,),
        "rate_limit_anon": "1000/60s",
        "rate_limit_key": "1000/60s",
    }
    # Backends given by name replace what the settings would build (Services' one seam).
    backends = {name: overrides.pop(name) for name in _BACKENDS & set(overrides)}
    values.update(overrides)
    settings = load_settings(**values)
    services = Services(settings, **backends)
    with serve(build_app(settings, services)) as url:
        yield Docent(url, settings, services)


@pytest.fixture(scope="session", autouse=True)
async def _model_clients_closed() -> AsyncIterator[None]:
    """The session loop's model clients (tests that ask a model directly), closed at its end."""
    yield
    from docent import modelclient

    await modelclient.aclose_clients()


@pytest.fixture
def docent(tmp_path: Path) -> Iterator[Docent]:
    """A fresh bundled app on an empty embedded store."""
    with running_docent(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def docent_with_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docent]:
    """One bundled app per module with the test corpus ingested."""
    with running_docent(tmp_path_factory.mktemp("corpus")) as running:
        running.ingest(corpus_documents())
        yield running


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """The embedded default's backends on a fresh store in `tmp_path`, closed after the test."""
    services = Services(load_settings(qdrant_path=str(tmp_path / "qdrant"), sample_corpus=""))
    try:
        yield services
    finally:
        await services.aclose()
