"""The ingest section: chunks/s on the embedded default, embedding requests batched vs per chunk,
and a re-ingest of the unchanged corpus."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.fixtures import model_standin, model_stats, settings_for
from bench.sizes import Sizes


async def timed_ingest(services: Any, docs: Sequence[Any], batch: int = 100) -> tuple[float, Any]:
    from docent.ingest import IngestResult

    total = IngestResult()
    started = time.perf_counter()
    for start in range(0, len(docs), batch):
        total.add(await services.ingestor.ingest(docs[start : start + batch]))
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
