"""`make bench`: Docent measured beside the physical limit, in one run on this machine.

    python -m bench.run [--smoke] [--out DIR] [--only chat,ingest,...]

Sections (each writes `<section>.json` to the output folder; `summary.md` tabulates them
against the targets):

- chat: time to first chunk and to `done` through the bundled app under uvicorn, against
  calling the model stand-in directly plus one vector search, at 1, 10 and 50 streams.
- ingest: chunks/s on the embedded default, embedding requests batched vs per chunk, re-ingest.
- retrieval: Docent's retrieval code vs the engine's own query time at 20,000 chunks.
- coldstart: each Lambda handler from a fresh interpreter to its first response, lazy vs eager.
- memory: RSS of the bundled app idle, after ingest, and holding open SSE streams.
- limiter: the cost of one sliding-window check on each store.
- protocols: what MCP and the OpenAI protocol add to an answer over /chat (bench/protocols.py).
- sites: `docent ingest` of a generated 150-file MkDocs project, wall time (bench/sites.py).
- cpu: CPU time per streamed token, chat request, ingested chunk and retrieval (bench/cpu.py).

`--smoke` runs every section at toy sizes (seconds): `make test` runs it so the suite cannot rot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench import deploy, protocols
from bench.figures import quantiles_ms
from bench.report import summary, update_readme
from bench.sites import bench_sites  # noqa: F401  (the `sites` section, run by name)

T = TypeVar("T")
R = TypeVar("R")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
ADMIN_KEY = "bench-admin-key"
MODEL_TTFT_S = 0.2
MODEL_TOKEN_S = 0.02
ANSWER = " ".join(f"Step {i} of the procedure is described in the guide [S1]." for i in range(4))
# How long the stand-in takes to stream ANSWER (about 45 tokens).
STREAM_S = MODEL_TTFT_S + 45 * MODEL_TOKEN_S
SECTIONS = (
    "chat", "ingest", "retrieval", "coldstart", "memory", "limiter", "protocols", "deploy", "sites",
    "cpu",
)  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    corpus_files: int
    chat_corpus_files: int
    chat_requests: dict[int, int]  # concurrency -> requests
    retrieval_chunks: int
    retrieval_queries: int
    coldstart_runs: int
    open_streams: int
    limiter_calls: int
    per_chunk_files: int
    cpu_streams: dict[int, int]  # concurrency -> requests per phase (bench/cpu.py)


FULL = Sizes(
    corpus_files=2000,
    chat_corpus_files=200,
    chat_requests={1: 30, 10: 100, 50: 250},
    retrieval_chunks=20_000,
    retrieval_queries=300,
    coldstart_runs=9,  # a noisy shared machine: the median of 9
    open_streams=200,
    limiter_calls=2000,
    per_chunk_files=100,
    cpu_streams={1: 8, 10: 40, 50: 150, 200: 400},
)
SMOKE = Sizes(
    corpus_files=30,
    chat_corpus_files=10,
    chat_requests={1: 3, 10: 10},
    retrieval_chunks=300,
    retrieval_queries=20,
    coldstart_runs=1,
    open_streams=10,
    limiter_calls=50,
    per_chunk_files=5,
    cpu_streams={1: 2, 10: 10},
)


# ---------------------------------------------------------------- figures


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no RSS for process {pid}")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    from bench.cpu import calibrate

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "calibration_ms": calibrate(),
    }


# ---------------------------------------------------------------- servers


@contextlib.contextmanager
def model_standin() -> Iterator[str]:
    """The OpenAI-compatible stand-in in its own process; yields its root URL."""
    from tests.support.harness import background_process, free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with background_process(
        [sys.executable, "-m", "bench.standin", str(port)],
        lambda: httpx.get(f"{url}/stats", timeout=1).status_code == 200,
        "stand-in",
        cwd=ROOT,
    ):
        yield url


def control(model: str, **values: Any) -> None:
    httpx.post(f"{model}/control", json=values, timeout=5).raise_for_status()


def model_stats(model: str) -> dict[str, int]:
    return dict(httpx.get(f"{model}/stats", timeout=5).json())


def docent_env(model: str | None, **extra: str) -> dict[str, str]:
    env = {
        "ADMIN_API_KEYS": ADMIN_KEY,
        "RATE_LIMIT_ANON": "10000000/60s",
        "RATE_LIMIT_KEY": "10000000/60s",
        "LOG_LEVEL": "WARNING",
        "EMBEDDING_PROVIDER": "none",
        # One load generator on one address opens hundreds of connections on purpose.
        "MAX_CONNECTIONS_PER_CLIENT": "0",
    }
    if model is not None:
        env |= {"OPENAI_BASE_URL": f"{model}/v1", "OPENAI_API_KEY": "bench-key"}
    return env | extra


def documents(paths: Sequence[Path]) -> list[dict[str, Any]]:
    return [{"id": p.name, "text": p.read_text(), "format": "markdown"} for p in paths]


async def ingest_over_http(client: httpx.AsyncClient, docs: Sequence[dict[str, Any]]) -> int:
    chunks = 0
    for start in range(0, len(docs), 50):
        response = await client.post(
            "/ingest",
            json={"documents": list(docs[start : start + 50])},
            headers={"X-API-Key": ADMIN_KEY},
            timeout=300,
        )
        response.raise_for_status()
        chunks += int(response.json()["chunks"])
    return chunks


def settings_for(path: Path, **values: Any) -> Any:
    from docent.config import load_settings

    base: dict[str, Any] = {"qdrant_path": str(path), "sample_corpus": ""}
    return load_settings(**(base | values))


# ---------------------------------------------------------------- chat


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
        shard = await self.store._get()
        request = self.store.request(
            Query(sparse.encode_query(question), vector, SearchFilter(), 5 * CHUNKS_PER_SOURCE)
        )
        points = await asyncio.to_thread(shard.query, request)
        context = "\n\n".join(str((p.payload or {}).get("text", "")) for p in points)
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


async def staggered(
    once: Callable[[T], Awaitable[R]],
    items: Sequence[T],
    concurrency: int,
    stream_s: float,
    failed: Callable[[T, Exception], R],
) -> list[R]:
    """`items` through `once` by `concurrency` workers, staggered over one stream's length (a
    steady `concurrency` open streams, not a burst); a failed request is `failed(item, exc)`."""
    queue = list(reversed(items))
    results: list[R] = []

    async def worker(number: int) -> None:
        await asyncio.sleep(number * stream_s / concurrency)
        while queue:
            item = queue.pop()
            try:
                results.append(await once(item))
            except Exception as exc:  # a failed request is a figure, not a crash of the bench
                results.append(failed(item, exc))

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return results


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


# ---------------------------------------------------------------- ingest


async def timed_ingest(services: Any, docs: Sequence[Any], batch: int = 100) -> tuple[float, Any]:
    from docent.ingest import IngestResult

    total = IngestResult()
    started = time.perf_counter()
    for start in range(0, len(docs), batch):
        result = await services.ingestor.ingest(docs[start : start + batch])
        total.documents += result.documents
        total.chunks += result.chunks
        total.unchanged += result.unchanged
    return time.perf_counter() - started, total


async def bench_ingest(sizes: Sizes, work: Path) -> dict[str, Any]:
    from bench.corpus import write_corpus
    from docent.ingest import DocumentIn
    from docent.services import Services

    paths = write_corpus(work / "corpus", sizes.corpus_files)
    docs = [DocumentIn(p.name, p.read_text()) for p in paths]
    out: dict[str, Any] = {"files": len(docs), "bytes": sum(len(d.text) for d in docs)}

    embedded = Services(settings_for(work / "ingest-embedded"))
    first_s, first = await timed_ingest(embedded, docs)
    again_s, again = await timed_ingest(embedded, docs)
    await embedded.aclose()
    out["embedded"] = {
        "chunks": first.chunks,
        "seconds": round(first_s, 3),
        "chunks_per_s": round(first.chunks / first_s, 1),
        "reingest_seconds": round(again_s, 4),
        "reingest_unchanged": again.unchanged,
        "reingest_speedup": round(first_s / again_s, 1),
    }

    with model_standin() as model:
        model_settings = {
            "openai_base_url": f"{model}/v1",
            "openai_api_key": "bench-key",
            "embedding_provider": "openai",
        }
        batched = Services(settings_for(work / "ingest-batched", **model_settings))
        before = model_stats(model)["embedding_requests"]
        first_s, first = await timed_ingest(batched, docs)
        middle = model_stats(model)["embedding_requests"]
        again_s, again = await timed_ingest(batched, docs)
        after = model_stats(model)["embedding_requests"]
        await batched.aclose()

        subset = docs[: sizes.per_chunk_files]
        one_by_one = Services(
            settings_for(work / "ingest-per-chunk", embedding_batch_size=1, **model_settings)
        )
        start_count = model_stats(model)["embedding_requests"]
        _, single = await timed_ingest(one_by_one, subset)
        single_requests = model_stats(model)["embedding_requests"] - start_count
        await one_by_one.aclose()

    batched_per_1000 = (middle - before) / first.chunks * 1000
    single_per_1000 = single_requests / single.chunks * 1000
    out["with_embeddings"] = {
        "chunks": first.chunks,
        "seconds": round(first_s, 3),
        "embedding_requests": middle - before,
        "requests_per_1000_chunks": round(batched_per_1000, 2),
        "per_chunk_requests_per_1000_chunks": round(single_per_1000, 1),
        "reduction": round(single_per_1000 / batched_per_1000, 1),
        "reingest_seconds": round(again_s, 4),
        "reingest_embedding_requests": after - middle,
        "reingest_speedup": round(first_s / again_s, 1),
    }
    return out


# ---------------------------------------------------------------- retrieval


class TableEmbedder:
    """Vectors computed ahead of time, so retrieval timings hold no model call."""

    model = "bench-hashed"
    dimensions = 64

    def __init__(self) -> None:
        self.table: dict[str, list[float]] = {}

    async def embed_documents(self, texts: Sequence[str], usage: Any) -> list[list[float]]:
        from tests.support.harness import hashed_vector

        return [hashed_vector(t, self.dimensions) for t in texts]

    async def embed_query(self, text: str, usage: Any) -> list[float]:
        return self.table[text]


async def bench_retrieval(sizes: Sizes, work: Path) -> dict[str, Any]:
    from bench.corpus import questions, write_corpus
    from docent import sparse
    from docent.edge import EdgeStore
    from docent.generation import Usage
    from docent.ingest import DocumentIn, Ingestor
    from docent.retrieval import CHUNKS_PER_SOURCE, retrieve
    from docent.vectors import Query, SearchFilter
    from tests.support.harness import hashed_vector

    settings = settings_for(work / "retrieval")
    store = EdgeStore(str(work / "retrieval" / "docent"))
    embedder = TableEmbedder()
    ingestor = Ingestor(
        store,
        embedder,  # type: ignore[arg-type]
        chunk_tokens=settings.chunk_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
        model=None,
    )
    number = 0
    while await store.total() < sizes.retrieval_chunks:
        paths = write_corpus(work / "retrieval-corpus", 250, start=number)
        number += 250
        await ingestor.ingest([DocumentIn(p.name, p.read_text()) for p in paths])
    chunks = await store.total()
    asked = questions(sizes.retrieval_queries, seed=23)
    embedder.table = {q: hashed_vector(q, embedder.dimensions) for q in asked}
    shard = await store._get()
    out: dict[str, Any] = {"chunks": chunks, "queries": len(asked)}
    for mode, active in (("bm25", None), ("hybrid", embedder)):
        engine: list[float] = []
        docent: list[float] = []
        for repeat in range(3):
            for question in asked:
                dense = embedder.table[question] if active else None
                query = Query(
                    sparse.encode_query(question), dense, SearchFilter(), 5 * CHUNKS_PER_SOURCE
                )
                request = store.request(query)
                started = time.perf_counter()
                shard.query(request)
                engine.append(time.perf_counter() - started)
                started = time.perf_counter()
                await retrieve(
                    store,
                    active,  # type: ignore[arg-type]
                    question,
                    top_k=5,
                    search_filter=SearchFilter(),
                    usage=Usage(),
                )
                docent.append(time.perf_counter() - started)
            if repeat == 0:  # the first pass warms caches: not timed
                engine.clear()
                docent.clear()
        e, d = quantiles_ms(engine), quantiles_ms(docent)
        out[mode] = {
            "engine_ms": e,
            "docent_ms": d,
            "added_p50_ms": round(d["p50"] - e["p50"], 3),
            "added_p99_ms": round(d["p99"] - e["p99"], 3),
        }
    await store.aclose()
    return out


# ---------------------------------------------------------------- cold start


def bench_coldstart(sizes: Sizes, work: Path) -> dict[str, Any]:
    import shutil

    # A container starts on an index someone filled: Docent's own docs, ingested once and
    # copied for every run, so the chat event gets a real answer with sources.
    prepared = work / "prepared"
    base_env = {**os.environ, "SAMPLE_CORPUS": "", "LOG_LEVEL": "WARNING"}
    subprocess.run(
        [sys.executable, "-m", "docent.cli", "ingest", str(ROOT / "docs")],
        cwd=ROOT,
        env={
            **base_env,
            "QDRANT_PATH": str(prepared / "qdrant"),
            "DOCENT_URL": "http://127.0.0.1:9",
        },
        capture_output=True,
        check=True,
    )
    out: dict[str, Any] = {"index": "docs/ ingested (embedded store)"}
    for name in ("health", "chat", "ingest"):
        for eager in (False, True):
            runs = []
            for run in range(sizes.coldstart_runs):
                copy = work / f"cold-{name}-{eager}-{run}"
                shutil.copytree(prepared, copy)
                env = {
                    **base_env,
                    "QDRANT_PATH": str(copy / "qdrant"),
                    "ADMIN_API_KEYS": "admin-example-key",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "POWERTOOLS_METRICS_NAMESPACE": "DocentBench",
                }
                command = [sys.executable, "-m", "bench.coldstart", name]
                started = time.perf_counter()
                done = subprocess.run(
                    command + (["--eager"] if eager else []),
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                wall = time.perf_counter() - started
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                figures["process_wall_s"] = wall
                runs.append(figures)
            key = f"{name}_{'eager' if eager else 'lazy'}"

            def median(name: str, runs: list[dict[str, Any]] = runs) -> float:
                return round(float(statistics.median(r[name] for r in runs)), 3)

            out[key] = {
                "status": runs[0]["status"],
                "first_response_s": median("first_response_s"),
                "first_response_best_s": round(min(r["first_response_s"] for r in runs), 3),
                "import_s": median("import_s"),
                "process_wall_s": median("process_wall_s"),
                "heavy_modules_loaded": runs[0]["heavy_modules_loaded"],
                "runs": len(runs),
            }
        lazy, eager_figures = out[f"{name}_lazy"], out[f"{name}_eager"]
        out[f"{name}_speedup"] = round(
            eager_figures["first_response_s"] / lazy["first_response_s"], 1
        )
    return out


# ---------------------------------------------------------------- memory


async def bench_memory(sizes: Sizes, work: Path) -> dict[str, Any]:
    from bench.corpus import write_corpus
    from tests.support.harness import docent_server

    paths = write_corpus(work / "corpus", sizes.corpus_files)
    with model_standin() as model:
        control(model, first_token_s=3600.0)  # every stream stays open, waiting on the model
        with docent_server(docent_env(model), str(work / "memory-docent")) as (url, process):
            limits = httpx.Limits(max_connections=sizes.open_streams + 20)
            async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
                await client.get("/health")
                await asyncio.sleep(1)
                idle = rss_mb(process.pid)
                chunks = await ingest_over_http(client, documents(paths))
                ingested = rss_mb(process.pid)
                opened = 0
                all_open = asyncio.Event()

                async def hold(number: int) -> None:
                    nonlocal opened
                    body = {"question": f"How do I rotate keys for billing? ({number})"}
                    async with client.stream("POST", "/chat", json=body) as response:
                        async for line in response.aiter_lines():
                            if line.startswith("data:"):
                                opened += 1
                                if opened == sizes.open_streams:
                                    all_open.set()
                                await asyncio.sleep(3600)

                holders = [asyncio.create_task(hold(i)) for i in range(sizes.open_streams)]
                await asyncio.wait_for(all_open.wait(), 120)
                await asyncio.sleep(1)
                streaming = rss_mb(process.pid)
                for task in holders:
                    task.cancel()
                await asyncio.gather(*holders, return_exceptions=True)
    return {
        "idle_mb": idle,
        "after_ingest_mb": ingested,
        "ingested_chunks": chunks,
        "open_streams": sizes.open_streams,
        "with_open_streams_mb": streaming,
        "per_stream_kb": round((streaming - ingested) * 1024 / sizes.open_streams, 1),
    }


# ---------------------------------------------------------------- limiter


async def bench_limiter(sizes: Sizes, work: Path) -> dict[str, Any]:
    from docent.config import RateRule
    from docent.limits import check
    from docent.services import Services
    from tests.support.harness import gateway_server, redis_server

    rule = RateRule.parse("100000000/60s")
    out: dict[str, Any] = {}
    with redis_server() as redis_url, gateway_server(redis_url) as gateway_url:
        from tests.support.harness import GATEWAY_TOKEN

        stores = {
            "memory": {},
            "redis": {"redis_url": redis_url},
            "upstash_gateway": {
                "upstash_redis_rest_url": gateway_url,
                "upstash_redis_rest_token": GATEWAY_TOKEN,
            },
        }
        for name, values in stores.items():
            services = Services(settings_for(work / f"limiter-{name}", **values))
            limiter = services.limiter
            for _ in range(20):  # connections, scripts loaded
                await check(limiter, "bench-warm", rule, 5.0)
            timings = []
            for number in range(sizes.limiter_calls):
                started = time.perf_counter()
                decision = await check(limiter, f"bench-{number % 50}", rule, 5.0)
                timings.append(time.perf_counter() - started)
                assert decision.allowed
            out[name] = {"check_ms": quantiles_ms(timings)}
            await services.aclose()
    return out


bench_protocols = protocols.bench_protocols


async def run(sections: Sequence[str], sizes: Sizes, out: Path, smoke: bool) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    about = machine()
    (out / "machine.json").write_text(json.dumps(about, indent=2) + "\n")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="docent-bench-") as scratch:
        for section in sections:
            work = Path(scratch) / section
            work.mkdir()
            started = time.perf_counter()
            print(f"bench: {section} ...", flush=True)
            if section == "coldstart":
                figures = await asyncio.to_thread(bench_coldstart, sizes, work)
            elif section == "deploy":  # the built Lambda artifacts: bench/deploy.py
                figures = await asyncio.to_thread(deploy.bench_deploy, sizes, work)
            elif section == "cpu":
                from bench.cpu import bench_cpu

                figures = await bench_cpu(sizes, work)
            else:
                figures = await globals()[f"bench_{section}"](sizes, work)
            figures["bench_seconds"] = round(time.perf_counter() - started, 1)
            results[section] = figures
            (out / f"{section}.json").write_text(json.dumps(figures, indent=2) + "\n")
    text = summary(results, about, smoke)
    (out / "summary.md").write_text(text)
    print(text)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="toy sizes, seconds not minutes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    asyncio.run(run(sections, SMOKE if args.smoke else FULL, args.out, args.smoke))
    if not args.smoke and set(sections) == set(SECTIONS) and args.out == DEFAULT_OUT:
        update_readme(ROOT / "README.md", (args.out / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
