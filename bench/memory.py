"""The memory section: RSS of the bundled app idle, after ingest, and holding open SSE streams."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from bench.fixtures import control, docent_env, documents, ingest_over_http, model_standin
from bench.machine import rss_mb
from bench.sizes import Sizes


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
