"""Servers for the protocol tests (MCP, OpenAI): `docent serve` processes and a Lambda shim.

- `protocol_docent`: `docent serve` with the test corpus, generous limits.
- `limited_docent`: the same with tight limits (each test takes its own key, so windows do
  not mix; the anonymous window is one per server, used by one test), each test started
  clear of a window roll.
- `down_docent`: `docent serve` whose vector store is a closed loopback port.
- `lambda_url`: a loopback HTTP server that turns each request into an API Gateway v2 event for
  `functions.chat.app.handler`, as API Gateway would, and returns the handler's response.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import importlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from tests.conftest import ADMIN_KEY, USER_KEY, corpus_documents, serve
from tests.support.servers import docent_server, free_port
from tests.support.windows import clear_of_window_roll

# Keys for the limited server: one per test that runs a window dry.
LIMITED_KEYS = (
    "openai-limited-key",
    "mcp-limited-key",
    "openai-async-limited-key",
    "shared-limited-key",
)
LIMIT = 3
WINDOW_S = 3600


def _ingest(url: str) -> None:
    response = httpx.post(
        f"{url}/ingest",
        json={"documents": corpus_documents()},
        headers={"X-API-Key": ADMIN_KEY},
        timeout=120,
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="session")
def protocol_docent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "ADMIN_API_KEYS": ADMIN_KEY,
        "API_KEYS": USER_KEY,
        "RATE_LIMIT_ANON": "1000/60s",
        "RATE_LIMIT_KEY": "1000/60s",
    }
    with docent_server(env, str(tmp_path_factory.mktemp("protocols"))) as (url, _):
        _ingest(url)
        yield url


@pytest.fixture(scope="session")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "ADMIN_API_KEYS": ADMIN_KEY,
        "API_KEYS": ",".join(LIMITED_KEYS),
        # An hour's window, and `limited_docent` starts each test clear of its roll, where the
        # sliding window's weighting of the previous window could admit one more.
        "RATE_LIMIT_ANON": f"{LIMIT}/{WINDOW_S}s",
        "RATE_LIMIT_KEY": f"{LIMIT}/{WINDOW_S}s",
    }
    with docent_server(env, str(tmp_path_factory.mktemp("limited"))) as (url, _):
        _ingest(url)
        yield url


@pytest.fixture
def limited_docent(limited_server: str) -> str:
    """The limited server, for a test that runs a window dry: started clear of a window roll."""
    clear_of_window_roll(WINDOW_S, margin_s=60)
    return limited_server


@pytest.fixture(scope="session")
def down_docent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "API_KEYS": USER_KEY,
        "QDRANT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "READY_TIMEOUT_S": "1",
    }
    with docent_server(env, str(tmp_path_factory.mktemp("down"))) as (url, _):
        yield url


# The chat Lambda behind a loopback HTTP server ------------------------------------------


@dataclass
class LambdaContext:
    """What the Lambda runtime passes as `context` (the attributes Powertools reads)."""

    aws_request_id: str = "c0ffee00-0000-4000-8000-000000000001"
    function_name: str = "docent-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:docent-test"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def http_event(scope: Scope, body: bytes) -> dict[str, Any]:
    """The API Gateway HTTP API (payload 2.0) event for one HTTP request."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    method, path = scope["method"], scope["path"]
    request_id = uuid.uuid4().hex
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": scope.get("query_string", b"").decode("latin-1"),
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "shim",
            "domainName": headers.get("host", "shim"),
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "198.51.100.20",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "timeEpoch": 0,
        },
        "isBase64Encoded": True,
        "body": base64.b64encode(body).decode(),
    }


class LambdaShim:
    """An ASGI app that invokes the Lambda handler API Gateway would route each request to, one
    invocation at a time, on one thread with its own event loop (a warm container)."""

    def __init__(self, handler: Any, routes: dict[str, Any] | None = None) -> None:
        self.handler = handler
        self.routes = routes or {}
        self.loop = asyncio.new_event_loop()
        self.worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, initializer=asyncio.set_event_loop, initargs=(self.loop,)
        )
        self.invocations = 0

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self.invocations += 1
        handler = self.routes.get(event["rawPath"], self.handler)
        return dict(handler(event, LambdaContext(aws_request_id=str(uuid.uuid4()))))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        running = asyncio.get_running_loop()
        result = await running.run_in_executor(self.worker, self.invoke, http_event(scope, body))
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        headers = [(k.encode(), str(v).encode()) for k, v in (result.get("headers") or {}).items()]
        start = {"type": "http.response.start", "status": result["statusCode"], "headers": headers}
        await send(start)
        await send({"type": "http.response.body", "body": data})

    def close(self, services: Any) -> None:
        """Close the container's clients, then end what still waits on its loop (a streamed
        response leaves the loop's exit watcher, docent.sse)."""

        def shut_down() -> None:
            self.loop.run_until_complete(services.aclose())
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

        self.worker.submit(shut_down).result(30)
        self.worker.shutdown()
        self.loop.close()


@dataclass
class LambdaEndpoint:
    url: str
    shim: LambdaShim


@pytest.fixture
def lambda_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaEndpoint]:
    """The chat function's `handler` behind a loopback URL (`/ingest` goes to the ingest
    function's handler, as the HTTP API routes it), its store holding the test corpus."""
    from docent.config import get_settings
    from docent.services import get_services

    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("ADMIN_API_KEYS", ADMIN_KEY)
    monkeypatch.setenv("API_KEYS", USER_KEY)
    monkeypatch.setenv("SAMPLE_CORPUS", "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    get_settings.cache_clear()
    chat = importlib.reload(importlib.import_module("functions.chat.app"))
    ingest = importlib.reload(importlib.import_module("functions.ingest.app"))
    shim = LambdaShim(chat.handler, routes={"/ingest": ingest.handler})
    try:
        with serve(shim) as url:
            _ingest(url)
            yield LambdaEndpoint(url, shim)
    finally:
        shim.close(get_services())
        get_settings.cache_clear()
