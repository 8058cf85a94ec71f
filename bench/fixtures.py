"""What the bench sections share: the model stand-in, a served Docent's environment, the corpus
over HTTP, settings for in-process services, the prepared index, the staggered load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
R = TypeVar("R")
ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "bench-admin-key"


@contextlib.contextmanager
def standin_process() -> Iterator[tuple[str, int]]:
    """The OpenAI-compatible stand-in (bench/standin.py) in its own process: (root URL, pid)."""
    from tests.support.harness import background_process, free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with background_process(
        [sys.executable, "-m", "bench.standin", str(port)],
        lambda: httpx.get(f"{url}/stats", timeout=1).status_code == 200,
        "stand-in",
        cwd=ROOT,
    ) as process:
        yield url, process.pid


@contextlib.contextmanager
def model_standin() -> Iterator[str]:
    """The stand-in in its own process; yields its root URL."""
    with standin_process() as (url, _):
        yield url


def control(model: str, **values: Any) -> None:
    """Set how the stand-in answers (first-token delay, token interval, the answer)."""
    httpx.post(f"{model}/control", json=values, timeout=5).raise_for_status()


def model_stats(model: str) -> dict[str, int]:
    """What the stand-in has served (embedding requests, ...)."""
    return dict(httpx.get(f"{model}/stats", timeout=5).json())


def docent_env(model: str | None, **extra: str) -> dict[str, str]:
    """The environment of a benchmarked `docent serve`: no limits in the way, quiet logs."""
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
    """Corpus files as `/ingest` takes them."""
    return [{"id": p.name, "text": p.read_text(), "format": "markdown"} for p in paths]


async def ingest_over_http(client: httpx.AsyncClient, docs: Sequence[dict[str, Any]]) -> int:
    """`/ingest` in batches of 50; the chunks written."""
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
    """Settings for in-process services on an embedded store at `path`."""
    from docent.config import load_settings

    base: dict[str, Any] = {"qdrant_path": str(path), "sample_corpus": ""}
    return load_settings(**(base | values))


def prepared_index(folder: Path) -> Path:
    """Docent's own docs ingested once into an embedded store at `folder`/qdrant (by the CLI, in
    its own process), for the sections that start containers on an index someone filled."""
    subprocess.run(
        [sys.executable, "-m", "docent.cli", "ingest", str(ROOT / "docs")],
        cwd=ROOT,
        env={
            **os.environ,
            "QDRANT_PATH": str(folder / "qdrant"),
            "SAMPLE_CORPUS": "",
            "LOG_LEVEL": "WARNING",
            "DOCENT_URL": "http://127.0.0.1:9",
        },
        capture_output=True,
        check=True,
    )
    return folder


def child_figures(
    command: Sequence[str], env: dict[str, str], cwd: Path | None = None
) -> dict[str, Any]:
    """Run a measuring child process: the JSON object its last line prints, plus its wall time
    from start to exit (`process_wall_s`)."""
    started = time.perf_counter()
    done = subprocess.run(
        list(command), cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    figures = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    figures["process_wall_s"] = time.perf_counter() - started
    return figures


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
