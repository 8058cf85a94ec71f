"""The model client's own connections (httpx's transport: `MODEL_HTTP_CLIENT=httpx`, and the
Lambda layer's) send a request's head and body in one write (one wake of the model server, one
send on ours), and a large body still leaves whole, with flow control."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from docent import modelclient
from docent.config import load_settings
from tests.conftest import serve


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    async def completions(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        said = body["messages"][-1]["content"]
        return JSONResponse(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"{len(said)} {said[-8:]}"},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    with serve(app) as url:
        yield f"{url}/v1"


class Counted:
    """A transport that counts its writes and passes everything on."""

    def __init__(self, transport: Any, writes: list[int]) -> None:
        self._transport, self._writes = transport, writes

    def write(self, data: bytes) -> None:
        self._writes.append(len(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def ask(
    model_url: str, tmp_path: Path, content: str, writes: list[int], timeout_s: float
) -> str:
    """Ask through the process's client for this timeout: one per test (the client, and so its
    connections, are shared per endpoint and timeout), so that its connection is opened here."""
    loop = asyncio.get_running_loop()
    connect = loop.create_connection

    async def counted(*args: Any, **kwargs: Any) -> Any:
        transport, protocol = await connect(*args, **kwargs)
        return Counted(transport, writes), protocol

    settings = load_settings(openai_base_url=model_url, openai_api_key="k",
                             qdrant_path=str(tmp_path / "q"), sample_corpus="",
                             model_timeout_s=timeout_s, model_http_client="httpx")  # fmt: skip
    client = modelclient.client_for(settings)
    loop.create_connection = counted  # type: ignore[method-assign]
    try:
        response = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": content}]
        )
    finally:
        del loop.create_connection
    return response.choices[0].message.content or ""


async def test_a_request_leaves_in_one_write(model_url: str, tmp_path: Path) -> None:
    writes: list[int] = []
    question = "How do I rotate the API keys? " * 60  # about 2 KB of body
    answer = await ask(model_url, tmp_path, question, writes, timeout_s=31)
    assert answer == f"{len(question)} {question[-8:]}"
    assert len(writes) == 1  # head and body together
    assert writes[0] > len(question)


async def test_a_large_body_leaves_whole(model_url: str, tmp_path: Path) -> None:
    writes: list[int] = []
    question = "x" * (3 * modelclient.HOLD_WRITES_BYTES) + "the end."
    answer = await ask(model_url, tmp_path, question, writes, timeout_s=32)
    assert answer == f"{len(question)} the end."
    assert sum(writes) > len(question)
