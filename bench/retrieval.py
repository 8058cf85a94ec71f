"""The retrieval section: Docent's retrieval code against the engine's own query time, BM25 and
hybrid, on an embedded store of `retrieval_chunks` chunks. The engine's time is
`EdgeStore.query_shard`: the query, and for hybrid both arms' queries, their fusion and the
winners' payloads."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.figures import quantiles_ms
from bench.fixtures import settings_for
from bench.sizes import Sizes


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
    shard = await store.engine()
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
                started = time.perf_counter()
                store.query_shard(shard, query)
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
