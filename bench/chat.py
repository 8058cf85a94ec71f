"""The chat section: time to first chunk and to `done` through the bundled app under uvicorn,
against calling the model stand-in directly plus one vector search, at 1, 10 and 50 streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.figures import quantiles_ms
from bench.fixtures import (
    control,
    docent_env,
    documents,
    ingest_over_http,
    model_standin,
    settings_for,
    staggered,
)
from bench.sizes import Sizes

MODEL_TTFT_S = 0.2
MODEL_TOKEN_S = 0.02
ANSWER = " ".join(f"Step {i} of the procedure is described in the guide [S1]." for i in range(4))
# How long the stand-in takes to stream ANSWER (about 45 tokens).
STREAM_S = MODEL_TTFT_S + 45 * MODEL_TOKEN_S


@dataclass
class Timing:
    ttft: float | None = None
    total: float | None = None
    sources: float | None = None
    error: str | None = None


@dataclass
class Direct:
    """The limit: embed the question and search the engine directly, then stream the model."""

    model: str
    store: Any
    timings: list[Timing] = field(default_factory=list)

    async def once(self, client: httpx.AsyncClient, question: str) -> Timing:
        from docent import sparse
        from docent.retrieval import CHUNKS_PER_SOURCE
        from docent.vectors import Query, SearchFilter

        timing = Timing()
        started = time.perf_counter()
        embedded = await client.post(
            f"{self.model}/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": [question]},
        )
        vector = embedded.json()["data"][0]["embedding"]
        shard = await self.store.engine()
        query = Query(sparse.encode_query(question), vector, SearchFilter(), 5 * CHUNKS_PER_SOURCE)
        hits = await asyncio.to_thread(self.store.query_shard, shard, query)
        context = "\n\n".join(str(h.payload.get("text", "")) for h in hits)
        body = {
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [
                {"role": "system", "content": context},
                {"role": "user", "content": question},
            ],
        }
        async with client.stream("POST", f"{self.model}/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                if line.strip() == "data: [DONE]":
                    timing.total = time.perf_counter() - started
                    break
                if timing.ttft is None and '"content"' in line:
                    timing.ttft = time.perf_counter() - started
        return timing


async def through_docent(client: httpx.AsyncClient, url: str, question: str) -> Timing:
    timing = Timing()
    started = time.perf_counter()
    async with client.stream("POST", f"{url}/chat", json={"question": question}) as response:
        if response.status_code != 200:
            timing.error = f"status {response.status_code}"
            return timing
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            now = time.perf_counter() - started
            if event["type"] == "sources" and timing.sources is None:
                timing.sources = now
            elif event["type"] == "chunk" and timing.ttft is None:
                timing.ttft = now
            elif event["type"] == "done":
                timing.total = now
            elif event["type"] == "error":
                timing.error = str(event.get("code"))
    return timing


async def at_concurrency(
    once: Callable[[str], Awaitable[Timing]], questions: Sequence[str], concurrency: int
) -> list[Timing]:
    return await staggered(
        once, questions, concurrency, STREAM_S, lambda _, exc: Timing(error=type(exc).__name__)
    )


def summarise(timings: Sequence[Timing]) -> dict[str, Any]:
    good = [t for t in timings if t.error is None and t.ttft is not None and t.total is not None]
    return {
        "requests": len(timings),
        "errors": len(timings) - len(good),
        "ttft_ms": quantiles_ms([t.ttft for t in good if t.ttft is not None]),
        "total_ms": quantiles_ms([t.total for t in good if t.total is not None]),
        "sources_ms": quantiles_ms([t.sources for t in good if t.sources is not None]),
    }


async def bench_chat(sizes: Sizes, work: Path) -> dict[str, Any]:
    from bench.corpus import questions, write_corpus
    from docent.services import Services
    from tests.support.harness import docent_server

    paths = write_corpus(work / "chat-corpus", sizes.chat_corpus_files)
    asked = questions(sum(sizes.chat_requests.values()) * 2)
    levels: dict[str, Any] = {}
    with model_standin() as model:
        control(model, first_token_s=MODEL_TTFT_S, token_interval_s=MODEL_TOKEN_S, answer=ANSWER)
        env = docent_env(model, EMBEDDING_PROVIDER="openai")
        with docent_server(env, str(work / "chat-docent")) as (url, _):
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                await ingest_over_http(client, documents(paths))
                services = Services(
                    settings_for(
                        work / "chat-direct",
                        openai_base_url=f"{model}/v1",
                        openai_api_key="bench-key",
                        embedding_provider="openai",
                    )
                )
                from docent.ingest import DocumentIn

                await services.ingestor.ingest(
                    [DocumentIn(d["id"], d["text"]) for d in documents(paths)]
                )
                direct = Direct(model, services.store)
                offset = 0
                for concurrency, count in sizes.chat_requests.items():
                    # Warm both paths (connections, first-use imports) before timing.
                    await at_concurrency(lambda q: direct.once(client, q), ["warm up"], 1)
                    await at_concurrency(lambda q: through_docent(client, url, q), ["warm"], 1)
                    batch = asked[offset : offset + count]
                    offset += count
                    base = await at_concurrency(
                        lambda q: direct.once(client, q), batch, concurrency
                    )
                    batch = asked[offset : offset + count]
                    offset += count
                    ours = await at_concurrency(
                        lambda q: through_docent(client, url, q), batch, concurrency
                    )
                    a, b = summarise(base), summarise(ours)
                    levels[str(concurrency)] = {
                        "direct": a,
                        "docent": b,
                        "overhead_ttft_p50_ms": _diff(b["ttft_ms"], a["ttft_ms"], "p50"),
                        "overhead_total_p50_ms": _diff(b["total_ms"], a["total_ms"], "p50"),
                        "overhead_ttft_p95_ms": _diff(b["ttft_ms"], a["ttft_ms"], "p95"),
                        "sources_before_model_first_token": all(
                            t.sources is not None and t.sources < MODEL_TTFT_S
                            for t in ours
                            if t.error is None
                        ),
                    }
                await services.aclose()
    return {
        "model_standin": {"first_token_s": MODEL_TTFT_S, "token_interval_s": MODEL_TOKEN_S},
        "corpus_files": len(paths),
        "levels": levels,
    }


def _diff(ours: dict[str, float], base: dict[str, float], key: str) -> float | None:
    if key not in ours or key not in base:
        return None
    return round(ours[key] - base[key], 3)
