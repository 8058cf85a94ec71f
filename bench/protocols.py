"""Bench section `protocols`: what MCP and the OpenAI protocol add to an answer over `/chat`.

One `docent serve` on the embedded default (no model: the extractive answer, no embeddings)
answers the same question through each door, requests interleaved so that drift on a busy
machine falls on all of them alike:

- `chat_json`: `POST /chat` with `Accept: application/json` (the whole answer at once)
- `openai`: `POST /v1/chat/completions`, not streamed
- `mcp`: the `ask_docs` tool call exactly as the `mcp` SDK's client sends it (recorded once
  from the real client, then replayed: the figure is the server's, not the client library's)
- `chat_stream` and `openai_stream`: the same answers streamed, timed to their last event

The added p50 of each protocol is its p50 minus that of the matching `/chat` request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.figures import quantiles_ms

KEY = "bench-protocols-key"
ADMIN_KEY = "bench-protocols-admin"
QUESTION = "How do I rotate keys for billing webhooks?"
# (label, figure, bound in ms): run.py makes them targets of the summary table.
TARGETS: tuple[tuple[str, Callable[[dict[str, Any]], Any], float], ...] = (
    ("Protocols: MCP ask_docs, added p50 over /chat", lambda r: r["mcp_added_p50_ms"], 2),
    ("Protocols: OpenAI completion, added p50 over /chat", lambda r: r["openai_added_p50_ms"], 2),
    (
        "Protocols: OpenAI stream, added p50 over /chat's stream",
        lambda r: r["openai_stream_added_p50_ms"],
        2,
    ),
)


async def _recorded_mcp_call(url: str) -> tuple[dict[str, str], bytes]:
    """The headers and body of the `tools/call` POST the real `mcp` client sends."""
    import httpx2
    from mcp.client import Client
    from mcp.client.streamable_http import streamable_http_client

    recorded: list[tuple[dict[str, str], bytes]] = []

    async def record(request: httpx2.Request) -> None:
        body = request.content
        if b'"tools/call"' in body:
            recorded.append((dict(request.headers), body))

    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {KEY}"}, event_hooks={"request": [record]}
        ) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        result = await client.call_tool("ask_docs", {"question": QUESTION})
        if result.is_error:
            raise RuntimeError(f"ask_docs failed: {result.content}")
    headers, body = recorded[-1]
    keep = {"accept", "content-type", "authorization", "mcp-protocol-version", "mcp-method"}
    return {
        k: v for k, v in headers.items() if k.lower() in keep or k.lower().startswith("mcp-")
    }, body


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """One timed request's arguments for `httpx.AsyncClient.stream`."""
    return {"method": "POST", "url": url, "json": body, "headers": headers}


async def _timed(client: httpx.AsyncClient, request: dict[str, Any]) -> float:
    started = time.perf_counter()
    async with client.stream(**request) as response:
        async for _ in response.aiter_bytes():
            pass
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{request['url']}: status {response.status_code}")
    return elapsed


async def bench_protocols(sizes: Any, work: Path) -> dict[str, Any]:
    from bench.corpus import write_corpus
    from tests.support.harness import docent_server

    rounds = max(5, sizes.chat_requests[1] * 10)
    paths = write_corpus(work / "corpus", sizes.chat_corpus_files)
    env = {
        "ADMIN_API_KEYS": ADMIN_KEY,
        "API_KEYS": KEY,
        "RATE_LIMIT_ANON": "10000000/60s",
        "RATE_LIMIT_KEY": "10000000/60s",
        "EMBEDDING_PROVIDER": "none",
        "LOG_LEVEL": "WARNING",
    }
    keyed = {"X-API-Key": KEY}
    messages = [{"role": "user", "content": QUESTION}]
    with docent_server(env, str(work / "docent")) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            documents = [{"id": p.name, "text": p.read_text()} for p in paths]
            for start in range(0, len(documents), 50):
                response = await client.post(
                    "/ingest",
                    json={"documents": documents[start : start + 50]},
                    headers={"X-API-Key": ADMIN_KEY},
                    timeout=300,
                )
                response.raise_for_status()
            mcp_headers, mcp_body = await _recorded_mcp_call(url)
            chat = {"question": QUESTION}
            completion = {"model": "docent", "messages": messages}
            mcp = {"content": mcp_body, "headers": mcp_headers}
            requests: dict[str, dict[str, Any]] = {
                "chat_json": _post("/chat", chat, {**keyed, "Accept": "application/json"}),
                "openai": _post("/v1/chat/completions", completion, keyed),
                "mcp": {"method": "POST", "url": "/mcp", **mcp},
                "chat_stream": _post("/chat", chat, {**keyed, "Accept": "text/event-stream"}),
                "openai_stream": _post(
                    "/v1/chat/completions", {**completion, "stream": True}, keyed
                ),
            }
            names = list(requests)
            for _ in range(5):  # connections, first-use imports (the mcp SDK), caches
                for name in names:
                    await _timed(client, requests[name])
            timings: dict[str, list[float]] = {name: [] for name in names}
            for number in range(rounds):
                turn = number % len(names)
                for name in names[turn:] + names[:turn]:  # each door first as often
                    timings[name].append(await _timed(client, requests[name]))
    figures: dict[str, Any] = {
        "rounds": rounds,
        "corpus_files": len(paths),
        "ms": {name: quantiles_ms(values) for name, values in timings.items()},
    }
    p50 = {name: figures["ms"][name]["p50"] for name in names}
    figures["mcp_added_p50_ms"] = round(p50["mcp"] - p50["chat_json"], 3)
    figures["openai_added_p50_ms"] = round(p50["openai"] - p50["chat_json"], 3)
    figures["openai_stream_added_p50_ms"] = round(p50["openai_stream"] - p50["chat_stream"], 3)
    return figures
