"""Each Lambda handler, invoked in-process with the `events/` files `sam local invoke -e` takes."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import parse_sse
from tests.support.interpreter import fresh_python
from tests.support.protocols import LambdaContext
from tests.support.servers import free_port
from tests.support.windows import clear_of_window_roll

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
ADMIN = "admin-example-key"  # the key the sample events carry


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


@pytest.fixture
def lambda_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh 'container': settings read anew from the environment, so the handlers' services
    (built lazily from them, `get_services`) are new too; closed after."""
    from docent import aws
    from docent.config import get_settings
    from docent.services import get_services

    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("ADMIN_API_KEYS", ADMIN)
    monkeypatch.setenv("SAMPLE_CORPUS", "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    get_settings.cache_clear()
    yield tmp_path
    aws._run(get_services().aclose())
    get_settings.cache_clear()


def handler_module(name: str) -> ModuleType:
    """The function's module, imported afresh as a new container would."""
    module = importlib.import_module(f"functions.{name}.app")
    return importlib.reload(module)


def body_of(response: dict[str, Any]) -> str:
    body = response.get("body") or ""
    return base64.b64decode(body).decode() if response.get("isBase64Encoded") else str(body)


def test_health_event(lambda_env: Path) -> None:
    response = handler_module("health").handler(event("health.json"), LambdaContext())
    assert response["statusCode"] == 200
    assert json.loads(body_of(response))["status"] == "ok"
    assert response["headers"]["x-request-id"]


def test_readiness_event(lambda_env: Path) -> None:
    response = handler_module("health").handler(event("health-ready.json"), LambdaContext())
    assert response["statusCode"] == 200
    body = json.loads(body_of(response))
    assert body["status"] == "ok" and body["checks"]["vectors"]["ok"] is True


def test_ingest_then_chat_events(lambda_env: Path) -> None:
    ingest = handler_module("ingest").handler(event("ingest.json"), LambdaContext())
    assert ingest["statusCode"] == 200, body_of(ingest)
    assert json.loads(body_of(ingest))["chunks"] >= 1

    listing = handler_module("ingest").handler(event("documents.json"), LambdaContext())
    documents = json.loads(body_of(listing))["documents"]
    assert [d["id"] for d in documents] == ["guide/install.md"]

    chat = handler_module("chat").handler(event("chat.json"), LambdaContext())
    assert chat["statusCode"] == 200
    answer = json.loads(body_of(chat))
    assert answer["answered"] is True
    assert answer["sources"][0]["url"].startswith("https://docs.example.com/install")
    assert chat["headers"]["x-ratelimit-limit"] == "10"


def test_function_url_event_gets_the_sse_body_buffered(lambda_env: Path) -> None:
    module = handler_module("ingest")
    module.handler(event("ingest.json"), LambdaContext())
    response = handler_module("chat").handler(event("chat-function-url.json"), LambdaContext())
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"].startswith("text/event-stream")
    kinds = [e["type"] for e in parse_sse(body_of(response))]
    assert kinds[0] == "sources" and kinds[-1] == "done"


def test_the_event_source_ip_is_the_client(
    lambda_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RATE_LIMIT_ANON", "1/3600s")
    clear_of_window_roll(3600)
    from docent.config import get_settings

    get_settings.cache_clear()
    chat = handler_module("chat")
    first = event("chat.json")
    other = event("chat.json")
    other["requestContext"]["http"]["sourceIp"] = "198.51.100.99"
    for spoof in (first, other):
        spoof["headers"]["x-forwarded-for"] = "203.0.113.1"
    statuses = [chat.handler(e, LambdaContext())["statusCode"] for e in (first, first, other)]
    assert statuses == [200, 429, 200]


def test_ingest_without_the_admin_key_is_refused(lambda_env: Path) -> None:
    anonymous = event("ingest.json")
    del anonymous["headers"]["x-api-key"]
    response = handler_module("ingest").handler(anonymous, LambdaContext())
    assert response["statusCode"] == 401
    assert json.loads(body_of(response))["error"]["code"] == "unauthorized"


def test_health_imports_neither_qdrant_client_nor_openai() -> None:
    code = (
        "import sys, functions.health.app as h\n"
        "heavy = [m for m in ('qdrant_client', 'openai', 'grpc', 'tiktoken') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    assert fresh_python(code) == "[]"


def test_chat_imports_no_model_or_server_client_until_needed() -> None:
    code = (
        "import sys, functions.chat.app, functions.ingest.app\n"
        "print([m for m in ('qdrant_client', 'openai', 'grpc', 'boto3') if m in sys.modules])\n"
    )
    assert fresh_python(code) == "[]"


def test_no_network_call_at_import() -> None:
    """Importing every handler with unreachable backends configured neither fails nor waits.

    Unreachable means a closed loopback port: a regression that connects at import fails here
    without sending anything off the machine.
    """
    closed = f"http://127.0.0.1:{free_port()}"
    env = {
        "QDRANT_URL": closed,
        "OPENAI_BASE_URL": f"{closed}/v1",
        "UPSTASH_REDIS_REST_URL": closed,
        "UPSTASH_REDIS_REST_TOKEN": "t",
        "ADMIN_API_KEYS": ADMIN,
    }
    code = "import functions.chat.app, functions.ingest.app, functions.health.app\n"
    import os

    fresh_python(code, env={**os.environ, **env}, timeout=20)


def test_storage_events_are_not_mistaken_for_http() -> None:
    from docent.aws import is_storage_event

    assert is_storage_event(event("ingest-s3.json"))
    assert is_storage_event(event("ingest-sqs.json"))
    assert not is_storage_event(event("ingest.json"))
    assert not asyncio.iscoroutinefunction(handler_module("ingest").handler)
