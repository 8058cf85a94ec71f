"""OpenAI-compatible stand-ins whose behaviour the tests and benchmarks control.

The embeddings stand-in gives the OpenAI embeddings path (batching, truncation, cache, retries) a
real HTTP server with deterministic vectors (hashed bag of words, so texts sharing words are
close). The chat stand-in streams a fixed answer at a set time to first token and token rate,
and injects faults on request: 429/500 answers, a hang, a connection dropped mid-stream.
The real model server for answers is llama.cpp (tests/support/llama.py); these are for what a
real server cannot be made to do on cue, and for timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DIMENSIONS = 64


def hashed_vector(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    vector = [0.0] * dimensions
    for word in re.findall(r"\w+", text.lower()):
        slot = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
        vector[slot % dimensions] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StandIn:
    """Shared state of both stand-ins: what was asked, and the faults queued for next requests."""

    embedding_requests: list[list[str]] = field(default_factory=list)
    chat_requests: list[dict[str, Any]] = field(default_factory=list)
    chat_headers: list[dict[str, str]] = field(default_factory=list)  # each request's headers
    faults: list[Fault] = field(default_factory=list)  # for the next chat requests
    embedding_faults: list[Fault] = field(default_factory=list)
    mode: str = "ok"  # ok | hang | drop
    answer: str = "Docent answers from your documentation [S1]. It cites what it uses [S1]."
    first_token_s: float = 0.0
    token_interval_s: float = 0.0
    report_usage: bool = True
    tokens_sent: int = 0
    disconnected: bool = False
    last_token_at: float = 0.0

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    @staticmethod
    def _fault(faults: list[Fault]) -> Response | None:
        if not faults:
            return None
        fault = faults.pop(0)
        body = {"error": {"message": f"injected {fault.status}", "type": "injected"}}
        return JSONResponse(body, status_code=fault.status, headers=fault.headers)

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.embedding_requests.append(list(inputs))
        fault = self._fault(self.embedding_faults)
        if fault is not None:
            return fault
        dims = int(body.get("dimensions") or DIMENSIONS)
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_vector(text, dims)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(text.split()) for text in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.chat_requests.append(body)
        self.chat_headers.append(dict(request.headers))
        fault = self._fault(self.faults)
        if fault is not None:
            return fault
        if not body.get("stream"):
            content = self.answer
            return JSONResponse(
                {
                    "id": "cmpl-standin",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
            )
        return StreamingResponse(self._stream(body, request), media_type="text/event-stream")

    async def _stream(self, body: dict[str, Any], request: Request) -> AsyncIterator[bytes]:
        def event(payload: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(payload)}\n\n".encode()

        base = {"id": "cmpl-standin", "object": "chat.completion.chunk", "model": body["model"]}
        if self.mode == "hang":
            await asyncio.sleep(3600)
        await asyncio.sleep(self.first_token_s)
        tokens = re.findall(r"\S+\s*", self.answer)
        try:
            for number, token in enumerate(tokens):
                if self.mode == "drop" and number == 3:
                    raise ConnectionResetError("injected: connection dropped mid-stream")
                choice = {"index": 0, "delta": {"content": token}, "finish_reason": None}
                yield event({**base, "choices": [choice]})
                self.tokens_sent += 1
                self.last_token_at = time.monotonic()
                if self.token_interval_s:
                    await asyncio.sleep(self.token_interval_s)
            yield event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if self.report_usage and (body.get("stream_options") or {}).get("include_usage"):
                usage = {"prompt_tokens": 42, "completion_tokens": len(tokens)}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                yield event({**base, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.disconnected = True
            raise

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ]
        )


@pytest.fixture(scope="session")
def _standin_server() -> Iterator[tuple[str, StandIn]]:
    from tests.conftest import serve

    state = StandIn()
    with serve(state.app()) as url:
        yield f"{url}/v1", state


@pytest.fixture
def standin(_standin_server: tuple[str, StandIn]) -> Iterator[tuple[str, StandIn]]:
    """The stand-in's base URL (`.../v1`) and its state, reset for each test."""
    url, state = _standin_server
    state.reset()
    yield url, state
    state.reset()
