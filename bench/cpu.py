"""The `cpu` section: CPU time per unit of work.

Wall-time targets pass on a fast machine and fail on a slow one, because a saturated server
makes every stream wait. CPU time per unit of work does not depend on how busy the machine is,
but it does on how fast: on this machine kind it has ranged over more than twice (67 to 162 µs
per streamed token, same code, calibration 28 to 87 ms), which is why every figure carries the
machine's calibration. This section reads the CPU time (user + system, from /proc) of the
`docent serve` process and of the model stand-in around each phase of work, and divides by the
work done:

- chat, at 1, 10, 50 and 200 concurrent streams: each level runs a long and a short answer
  (same prompt path, different token counts), so the CPU splits into a cost per streamed token
  (the slope) and a cost per request besides its tokens (the intercept). The same answers
  requested from the stand-in directly give its own figures: the yardstick of formatting a
  token as SSE in Python.
- ingest: the server's CPU per chunk for documents posted to `/ingest` (embedded default).
- retrieval: CPU per query of Docent's retrieval code on the embedded default, in this process.

Wall figures come along (first chunk against the stand-in called directly, and whether the
client held `sources` before the model could have sent its first token, from the time the
stand-in saw the model call arrive), labelled with a calibration: the CPU time of a fixed
pure-Python workload on this machine. The load generator shares the machine's cores with the
server it saturates and reads late when busy, so whether `sources` came first is judged by a
client apart from the load (`bench/probe.py`, its own process), asking beside a repeat of each
level's load that the CPU figures leave out; the load generator's own view (the kernel's
TCP_INFO stamp of the last data on its socket) is kept beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.figures import quantiles_ms
from bench.fixtures import (
    ADMIN_KEY,
    ROOT,
    control,
    docent_env,
    documents,
    ingest_over_http,
    settings_for,
    staggered,
    standin_process,
)
from bench.report import Target

FIRST_TOKEN_S = 0.2
TOKEN_INTERVAL_S = 0.02  # 50 tokens/s, the reference stream
SENTENCE = "Step {} of the procedure is described in the guide [S1]. "
LONG_ANSWER = "".join(SENTENCE.format(i) for i in range(10)).strip()  # 110 tokens
SHORT_ANSWER = "See the guide [S1]."  # 4 tokens
TARGET_LEVEL = "50"
KERNEL_TICK_S = 0.01  # the kernel's TCP timestamps count jiffies (1 to 10 ms)


def model_tokens(answer: str) -> int:
    """Tokens the stand-in streams for `answer` (one per word with its trailing space)."""
    return len(re.findall(r"\S+\s*", answer))


# ---------------------------------------------------------------- CPU clocks


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads, dead ones too)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _workload() -> int:
    total = 0
    table: dict[int, int] = {}
    for i in range(200_000):
        total += len(str(i)) * (i % 7)
        table[i % 997] = table.get(i % 997, 0) + 1
    return total + len(table)


def calibrate(runs: int = 5) -> float:
    """Milliseconds of CPU for a fixed pure-Python workload here (best of `runs`): a machine
    about 1.7x slower for the same Python shows about 1.7x this figure."""
    best = float("inf")
    for _ in range(runs):
        started = time.thread_time()
        _workload()
        best = min(best, time.thread_time() - started)
    return round(best * 1000, 1)


# ---------------------------------------------------------------- servers


# ---------------------------------------------------------------- one stream


def gc_runs(url: str) -> dict[str, int]:
    """The server's garbage collections so far by generation (`python_gc_collections_total` at
    /metrics): a full collection pauses every open stream."""
    text = httpx.get(f"{url}/metrics", headers={"X-API-Key": ADMIN_KEY}, timeout=10).text
    found = re.findall(r'^python_gc_collections_total\{generation="(\d)"\} (\S+)$', text, re.M)
    return {generation: int(float(count)) for generation, count in found}


def received_at(sock: Any) -> float | None:
    """When the kernel last took data in on `sock` (`time.monotonic()`, to its clock tick), from
    TCP_INFO's `tcpi_last_data_recv`: the truth about an arrival, however late a busy client
    gets to read it. Data that came in after it, and a clock tick's margin, move it later, never
    earlier."""
    import socket
    import struct

    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    since_ms: int = struct.unpack_from("I", info, 52)[0]  # tcpi_last_data_recv
    return time.monotonic() - since_ms / 1000 + KERNEL_TICK_S


@dataclass
class Stream:
    """One request as the client saw it (times from `time.monotonic()`)."""

    tag: str
    started: float
    sources: float | None = None  # when the kernel had `sources` (or later: `received_at`)
    sources_read: float | None = None  # when this busy client got to read it
    first: float | None = None
    done: bool = False
    frames: int = 0
    text: str = ""
    error: str | None = None


async def through_docent(client: httpx.AsyncClient, url: str, question: str, tag: str) -> Stream:
    stream = Stream(tag, time.monotonic())
    body = bytearray()
    async with client.stream("POST", f"{url}/chat", json={"question": question}) as response:
        if response.status_code != 200:
            stream.error = f"status {response.status_code}"
            return stream
        sock = response.extensions["network_stream"].get_extra_info("socket")
        async for data in response.aiter_raw():
            body += data
            if stream.sources is None and b'"type":"sources"' in body:
                stream.sources_read = time.monotonic()
                stream.sources = min(received_at(sock) or stream.sources_read, stream.sources_read)
            if stream.first is None and b'"type":"chunk"' in data:
                stream.first = time.monotonic()
    # Parsed after the fact: the client's own CPU stays off the timed path.
    for line in body.decode().splitlines():
        if not line.startswith("data:"):
            continue
        event = json.loads(line[5:])
        if event["type"] == "chunk":
            stream.frames += 1
            stream.text += event["content"]
        elif event["type"] == "done":
            stream.done = True
        elif event["type"] == "error":
            stream.error = str(event.get("code"))
    if not stream.done and stream.error is None:
        stream.error = "no done event"
    return stream


async def direct(client: httpx.AsyncClient, model: str, question: str, tag: str) -> Stream:
    stream = Stream(tag, time.monotonic())
    body = {"model": "gpt-4o-mini", "stream": True,
            "messages": [{"role": "user", "content": question}]}  # fmt: skip
    async with client.stream("POST", f"{model}/v1/chat/completions", json=body) as response:
        async for data in response.aiter_raw():
            if stream.first is None and b'"content"' in data:
                stream.first = time.monotonic()
            if b"[DONE]" in data:
                stream.done = True
    if not stream.done:
        stream.error = "no [DONE]"
    return stream


async def at_concurrency(
    once: Any, questions: Sequence[tuple[str, str]], concurrency: int, stream_s: float
) -> list[Stream]:
    """`(question, tag)` pairs through `once(question, tag)`, staggered as `fixtures.staggered` runs
    them."""
    return await staggered(
        lambda item: once(*item),
        questions,
        concurrency,
        stream_s,
        lambda item, exc: Stream(item[1], 0.0, error=type(exc).__name__),
    )


# ---------------------------------------------------------------- phases


def each_answer(model: str) -> Iterator[tuple[str, float]]:
    """Each answer in turn, the stand-in set to stream it: (its kind, one stream's length)."""
    for answer, kind in ((LONG_ANSWER, "long"), (SHORT_ANSWER, "short")):
        control(model, answer=answer)
        yield kind, FIRST_TOKEN_S + model_tokens(answer) * TOKEN_INTERVAL_S


@dataclass
class Phase:
    """CPU seconds each process spent while one batch of requests ran, and the requests."""

    streams: list[Stream]
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(1 for s in self.streams if s.error is not None)


async def phase(
    pids: dict[str, int], once: Any, batch: Sequence[tuple[str, str]], concurrency: int,
    stream_s: float,
) -> Phase:  # fmt: skip
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    streams = await at_concurrency(once, batch, concurrency, stream_s)
    await asyncio.sleep(0.2)  # the servers' last writes and closes land in this phase
    return Phase(streams, {name: cpu_s(pid) - before[name] for name, pid in pids.items()})


def split(
    runs: dict[str, Phase], path: str, process: str, requests: int, tokens: tuple[int, int]
) -> dict[str, float]:
    """A process's CPU per token (the slope between the long and the short answers' phases on
    one path) and per request besides its tokens (what is left of a short answer's CPU)."""
    long, short = runs[f"{path}_long"].cpu[process], runs[f"{path}_short"].cpu[process]
    per_long, per_short = long / requests, short / requests
    per_token = max(0.0, (per_long - per_short) / (tokens[0] - tokens[1]))
    return {
        "cpu_ms_per_request_long": round(per_long * 1000, 3),
        "cpu_ms_per_request_short": round(per_short * 1000, 3),
        "cpu_us_per_token": round(per_token * 1e6, 1),
        "cpu_ms_per_request_besides_tokens": round(
            max(0.0, per_short - per_token * tokens[1]) * 1000, 3
        ),
    }


async def chat_levels(
    url: str, model: str, pids: dict[str, int], levels: dict[int, int], questions: list[str]
) -> dict[str, Any]:
    tokens = (model_tokens(LONG_ANSWER), model_tokens(SHORT_ANSWER))
    top = max(levels)
    limits = httpx.Limits(max_connections=2 * top + 20, max_keepalive_connections=2 * top + 20)
    out: dict[str, Any] = {}
    tagged = iter((q, str(n)) for n, q in enumerate(questions))  # each ends with "(#n)"
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        docent = functools.partial(through_docent, client, url)
        straight = functools.partial(direct, client, model)
        stream_s_long = FIRST_TOKEN_S + tokens[0] * TOKEN_INTERVAL_S
        for concurrency, count in levels.items():
            runs: dict[str, Phase] = {}
            collected = gc_runs(url)
            for kind, stream_s in each_answer(model):
                # Warm both paths (connections, first-use imports) before the clocks start.
                await at_concurrency(docent, [next(tagged)], 1, 0)
                await at_concurrency(straight, [next(tagged)], 1, 0)
                for name, once in (("direct", straight), ("docent", docent)):
                    batch = [next(tagged) for _ in range(count)]
                    runs[f"{name}_{kind}"] = await phase(pids, once, batch, concurrency, stream_s)
            collected = {g: n - collected.get(g, 0) for g, n in gc_runs(url).items()}
            # Unmeasured (its requests would weigh on the CPU figures): the long answers' load
            # again, with a client apart from it asking beside (bench/probe.py).
            control(model, answer=LONG_ANSWER)
            load = [next(tagged) for _ in range(count)]
            async with probing(url, PROBE_TAGS + concurrency * PROBE_TAG_STEP) as probed:
                await at_concurrency(docent, load, concurrency, stream_s_long)
            arrivals = httpx.get(f"{model}/arrivals", timeout=30).json()
            ours = runs["docent_long"].streams + runs["docent_short"].streams
            ok = [s for s in ours if s.error is None]
            first = [s.first - s.started for s in runs["docent_long"].streams if s.first]
            base = [s.first - s.started for s in runs["direct_long"].streams if s.first]
            docent_q, direct_q = quantiles_ms(first), quantiles_ms(base)
            answers = {"long": LONG_ANSWER, "short": SHORT_ANSWER}
            # The client held `sources` before the model could have sent its first token: by
            # the kernel's clock (the load generator shares the CPU with the server it loads,
            # and reads late when busy), and by when the client got to read it.
            early = [
                s.sources is not None
                and s.tag in arrivals
                and s.sources < arrivals[s.tag] + FIRST_TOKEN_S
                for s in ok
            ]
            read_late = sum(
                1
                for s in ok
                if s.sources_read is None
                or s.tag not in arrivals
                or s.sources_read >= arrivals[s.tag] + FIRST_TOKEN_S
            )
            # How long before the model call arrived the client held `sources` (< 0: after).
            lead = [arrivals[s.tag] - s.sources for s in ok if s.sources and s.tag in arrivals]
            out[str(concurrency)] = {
                "streams": concurrency,
                "requests_per_phase": count,
                "tokens_per_answer": {"long": tokens[0], "short": tokens[1]},
                "errors": {k: p.errors for k, p in runs.items()},
                "answers_identical": sum(
                    1
                    for kind in answers
                    for s in runs[f"docent_{kind}"].streams
                    if s.error is None and s.text == answers[kind]
                ),
                "answers": len(ours),
                "frames_per_long_answer": round(
                    sum(s.frames for s in runs["docent_long"].streams) / count, 1
                ),
                "docent": split(runs, "docent", "docent", count, tokens),
                "docent_gc_collections_by_generation": collected,
                "standin_direct": split(runs, "direct", "standin", count, tokens),
                "standin_serving_docent_cpu_ms_per_request_long": round(
                    runs["docent_long"].cpu["standin"] / count * 1000, 3
                ),
                "first_chunk_ms": {"docent": docent_q, "direct": direct_q},
                "added_first_chunk_p50_ms": round(docent_q["p50"] - direct_q["p50"], 3)
                if docent_q.get("n") and direct_q.get("n")
                else None,
                "sources_before_model_first_token": bool(early) and all(early),
                "sources_late": sum(1 for e in early if not e),
                "sources_read_late_by_the_client": read_late,
                "sources_lead_over_model_call_ms": quantiles_ms(lead),
                "sources_lead_min_ms": round(min(lead) * 1000, 1) if lead else None,
                "probe": probe_figures(probed, arrivals),
            }
    return out


PROBE_TAGS = 10_000_000  # the probe's question tags, apart from the load's
PROBE_TAG_STEP = 10_000


@contextlib.asynccontextmanager
async def probing(url: str, first_tag: int) -> AsyncIterator[list[dict[str, Any]]]:
    """`bench/probe.py` in its own process for as long as the block runs; then its requests."""
    results: list[dict[str, Any]] = []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.probe", url, str(first_tag), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield results
    finally:
        out, _ = await process.communicate(b"")  # stdin closed: it finishes and reports
        results.extend(json.loads(out))


def probe_figures(probed: list[dict[str, Any]], arrivals: dict[str, float]) -> dict[str, Any]:
    """When the probe held `sources`, against when the model could have sent its first token."""
    answered = [p for p in probed if p["error"] is None]
    ok = [p for p in answered if p["tag"] in arrivals and p["sources"]]
    lead = [arrivals[p["tag"]] - p["sources"] for p in ok]
    return {
        "requests": len(probed),
        "errors": len(probed) - len(answered),
        "unmatched": len(answered) - len(ok),
        "sources_late": sum(1 for x in lead if x <= -FIRST_TOKEN_S),
        "sources_lead_over_model_call_ms": quantiles_ms(lead),
        "sources_lead_min_ms": round(min(lead) * 1000, 1) if lead else None,
        "first_sources_ms": quantiles_ms([p["sources"] - p["started"] for p in ok]),
    }


async def ingest_cpu(url: str, pid: int, docs: Sequence[dict[str, Any]]) -> dict[str, Any]:

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await ingest_over_http(client, docs[:5])  # first-use imports and the collection
        before = cpu_s(pid)
        started = time.perf_counter()
        chunks = await ingest_over_http(client, docs[5:])
        wall = time.perf_counter() - started
        spent = cpu_s(pid) - before
    return {
        "documents": len(docs) - 5,
        "chunks": chunks,
        "seconds": round(wall, 3),
        "cpu_s": round(spent, 3),
        "cpu_ms_per_chunk": round(spent / chunks * 1000, 4) if chunks else None,
    }


async def retrieval_cpu(work: Path, paths: Sequence[Path], count: int) -> dict[str, Any]:
    from bench.corpus import questions
    from docent.generation import Usage
    from docent.ingest import DocumentIn
    from docent.retrieval import retrieve
    from docent.services import Services
    from docent.vectors import SearchFilter

    services = Services(settings_for(work / "retrieval-cpu"))
    await services.ingestor.ingest([DocumentIn(p.name, p.read_text()) for p in paths])
    asked = questions(count, seed=31)

    async def one(question: str) -> None:
        await retrieve(services.store, None, question, top_k=5,
                       search_filter=SearchFilter(), usage=Usage())  # fmt: skip

    for question in asked[:5]:
        await one(question)
    before, started = time.process_time(), time.perf_counter()
    for question in asked:
        await one(question)
    spent, wall = time.process_time() - before, time.perf_counter() - started
    chunks = await services.store.total()
    await services.aclose()
    return {
        "chunks": chunks,
        "queries": len(asked),
        "cpu_ms_per_query": round(spent / len(asked) * 1000, 3),
        "wall_ms_per_query": round(wall / len(asked) * 1000, 3),
    }


# ---------------------------------------------------------------- before and after

BASELINE_ENV = "BENCH_CPU_BASELINE"  # a git revision to measure beside this tree, in this run
# A folder of packages the baseline imports and this tree no longer installs (an older revision
# needs pydantic-settings, say: `pip install --no-deps --target DIR ...`), on its path alone.
BASELINE_SITE_ENV = "BENCH_CPU_BASELINE_SITE"


def baseline_tree(revision: str, work: Path) -> Path:
    """`revision` of this repository in a folder of its own, with this tree's bundled encodings."""
    import shutil
    import subprocess

    tree = work / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    encodings = ROOT / "layers/common/docent/encodings"
    if encodings.exists():
        shutil.copytree(encodings, tree / "layers/common/docent/encodings", dirs_exist_ok=True)
    return tree


async def one_server(
    tree: Path | None, model: str, work: Path, docs: Sequence[dict[str, Any]],
    levels: dict[int, int], tagged: Iterator[tuple[str, str]],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per-token and per-request CPU at each level of a fresh `docent serve`: this tree's, or
    (`tree`) an older revision's. Both run the same command with the same options (each its own
    `docent.cli`), so the figures differ by the code alone."""
    from tests.support.harness import background_process, free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root = tree or ROOT
    site = [os.environ[BASELINE_SITE_ENV]] if tree and os.environ.get(BASELINE_SITE_ENV) else []
    env = {**os.environ, **docent_env(model), "SAMPLE_CORPUS": "",
           "QDRANT_PATH": str(work / f"ab-{port}"),
           "PYTHONPATH": os.pathsep.join([f"{root}/layers/common", str(root), *site])}  # fmt: skip
    command = [sys.executable, "-m", "docent.cli", "serve", "--host", "127.0.0.1", "--port",
               str(port)]  # fmt: skip
    ready = lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200  # noqa: E731
    tokens = (model_tokens(LONG_ANSWER), model_tokens(SHORT_ANSWER))
    out: dict[str, dict[str, Any]] = {}
    with background_process(command, ready, "docent", env=env, cwd=root) as process:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            await ingest_over_http(client, docs)
        top = max(levels)
        limits = httpx.Limits(max_connections=top + 20, max_keepalive_connections=top + 20)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            docent = functools.partial(through_docent, client, url)
            for level, count in levels.items():
                runs: dict[str, Phase] = {}
                for kind, stream_s in each_answer(model):
                    await at_concurrency(docent, [next(tagged)], 1, 0)
                    batch = [next(tagged) for _ in range(count)]
                    runs[f"docent_{kind}"] = await phase(
                        {"docent": process.pid}, docent, batch, level, stream_s
                    )
                out[str(level)] = split(runs, "docent", "docent", count, tokens) | {
                    "errors": runs["docent_long"].errors + runs["docent_short"].errors
                }
    return out


async def before_and_after(
    revision: str, model: str, work: Path, paths: Sequence[Path], levels: dict[int, int],
    questions: list[str],
) -> dict[str, Any]:  # fmt: skip
    """The baseline revision and this tree at every level, alternating (before, after, after,
    before) so that a machine that slows down or speeds up during the run weighs on both alike."""
    import statistics

    tree = baseline_tree(revision, work)
    tagged = iter((q, str(n)) for n, q in enumerate(questions))
    figures: dict[str, list[dict[str, dict[str, Any]]]] = {"before": [], "after": []}
    for which in ("before", "after", "after", "before"):
        figures[which].append(
            await one_server(tree if which == "before" else None, model, work, documents(paths),
                             levels, tagged)
        )  # fmt: skip

    def median(which: str, level: str, key: str) -> float:
        return round(float(statistics.median(f[level][key] for f in figures[which])), 3)

    keys = ("cpu_us_per_token", "cpu_ms_per_request_besides_tokens")
    pairs = [(which, key) for which in figures for key in keys]
    return {
        "revision": revision,
        "runs": figures,
        "levels": {
            str(n): {f"{which}_{key}": median(which, str(n), key) for which, key in pairs}
            | {"errors": sum(f[str(n)]["errors"] for runs in figures.values() for f in runs)}
            for n in levels
        },
    }


async def bench_cpu(sizes: Any, work: Path) -> dict[str, Any]:
    from bench.corpus import questions, write_corpus
    from tests.support.harness import docent_server

    levels: dict[int, int] = sizes.cpu_streams
    paths = write_corpus(work / "cpu-corpus", sizes.chat_corpus_files)
    needed = sum(5 * count + 4 for count in levels.values())
    out: dict[str, Any] = {"calibration_ms": calibrate()}
    with standin_process() as (model, standin_pid):
        control(model, first_token_s=FIRST_TOKEN_S, token_interval_s=TOKEN_INTERVAL_S)
        env = docent_env(model)  # the embedded default (BM25), the stand-in as its model
        with docent_server(env, str(work / "cpu-docent")) as (url, process):
            out["ingest"] = await ingest_cpu(url, process.pid, documents(paths))
            pids = {"docent": process.pid, "standin": standin_pid}
            out["levels"] = await chat_levels(url, model, pids, levels, questions(needed, 41))
        revision = os.environ.get(BASELINE_ENV)
        if revision:
            asked = questions(8 * sum(levels.values()) + 16 * len(levels), 43)
            out["before_and_after"] = await before_and_after(
                revision, model, work, paths, levels, asked
            )
    out["retrieval"] = await retrieval_cpu(work, paths, sizes.retrieval_queries)
    out["model_standin"] = {"first_token_s": FIRST_TOKEN_S, "token_interval_s": TOKEN_INTERVAL_S}
    return out


# ---------------------------------------------------------------- report


def _level(r: dict[str, Any]) -> dict[str, Any]:
    levels: dict[str, Any] = r["levels"]
    return dict(levels[TARGET_LEVEL] if TARGET_LEVEL in levels else levels[max(levels, key=int)])


TARGETS = [
    Target(
        "CPU: Docent server per streamed token, 50 streams (µs)",
        "cpu",
        lambda r: _level(r)["docent"]["cpu_us_per_token"],
        "at_most",
        80,
        " µs",
    ),
    Target(
        "CPU: Docent server per chat request besides its tokens, 50 streams (ms)",
        "cpu",
        lambda r: _level(r)["docent"]["cpu_ms_per_request_besides_tokens"],
        "at_most",
        4,
        " ms",
    ),
    Target(
        "CPU: Docent server per ingested chunk, embedded default (ms)",
        "cpu",
        lambda r: r["ingest"]["cpu_ms_per_chunk"],
        "at_most",
        0.5,
        " ms",
    ),
    Target(
        "Wall: added time to first chunk, p50 at 50 streams (ms)",
        "cpu",
        lambda r: _level(r)["added_first_chunk_p50_ms"],
        "at_most",
        20,
        " ms",
    ),
    Target(
        "Wall: `sources` before the model's first token (every level, every request of a "
        "client apart from the load)",
        "cpu",
        lambda r: all(
            v["probe"]["requests"] > 0
            and v["probe"]["errors"] == v["probe"]["unmatched"] == v["probe"]["sources_late"] == 0
            for v in r["levels"].values()
        ),
        "exactly",
        True,
    ),
    Target(
        "Docent errors at the most streams (200 in the full run)",
        "cpu",
        lambda r: sum(
            n for k, n in r["levels"][max(r["levels"], key=int)]["errors"].items() if "docent" in k
        ),
        "exactly",
        0,
    ),
]


def details(results: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    cpu = results.get("cpu")
    if not cpu:
        return []
    rows = [
        (
            "CPU calibration: a fixed pure-Python workload (ms of CPU, best of 5; "
            "wall figures scale with it)",
            str(cpu["calibration_ms"]),
        )
    ]
    for level, f in cpu["levels"].items():
        d, s = f["docent"], f["standin_direct"]
        rows.append(
            (
                f"CPU at {level} streams: per token (µs) / per request besides tokens (ms), "
                "Docent vs stand-in",
                f"{d['cpu_us_per_token']} / {d['cpu_ms_per_request_besides_tokens']} vs "
                f"{s['cpu_us_per_token']} / {s['cpu_ms_per_request_besides_tokens']}",
            )
        )
        rows.append(
            (
                f"Wall at {level} streams: `sources` late (in the client's socket after the model "
                "could have answered, by the kernel's clock) / earliest lead over the model call "
                "(ms) / read late by the busy load generator",
                f"{f['sources_late']} of {f['answers']} / {f['sources_lead_min_ms']} / "
                f"{f['sources_read_late_by_the_client']}",
            )
        )
        probe = f["probe"]
        rows.append(
            (
                f"Wall at {level} streams, a client apart from the load (bench/probe.py): "
                "`sources` late / requests (errors) / lead over the model call p50, min (ms) / "
                "`sources` after the request p50, p95 (ms)",
                f"{probe['sources_late']} / {probe['requests']} ({probe['errors']}) / "
                f"{probe['sources_lead_over_model_call_ms'].get('p50')}, "
                f"{probe['sources_lead_min_ms']} / {probe['first_sources_ms'].get('p50')}, "
                f"{probe['first_sources_ms'].get('p95')}",
            )
        )
        first = f["first_chunk_ms"]
        if "docent_gc_collections_by_generation" in f:
            runs = f["docent_gc_collections_by_generation"]
            rows.append(
                (
                    f"Garbage collections in Docent's server at {level} streams (all four "
                    "phases), young / middle / full",
                    " / ".join(str(runs.get(g, "?")) for g in ("0", "1", "2")),
                )
            )
        rows.append(
            (
                f"Wall at {level} streams: first chunk p50/p95/p99 (ms), Docent vs direct; "
                "frames per 110-token answer; errors, Docent vs direct",
                f"{_q(first['docent'])} vs {_q(first['direct'])}; "
                f"{f['frames_per_long_answer']}; {f['errors']['docent_long']}"
                f"+{f['errors']['docent_short']} vs {f['errors']['direct_long']}"
                f"+{f['errors']['direct_short']}",
            )
        )
    ab = cpu.get("before_and_after") or {}
    for level, f in ab.get("levels", {}).items():
        rows.append(
            (
                f"Before ({ab['revision'][:12]}) and after, same run, alternating, at {level} "
                "streams: CPU per token (µs) / per request besides tokens (ms)",
                f"{f['before_cpu_us_per_token']} / {f['before_cpu_ms_per_request_besides_tokens']}"
                f" before, {f['after_cpu_us_per_token']} / "
                f"{f['after_cpu_ms_per_request_besides_tokens']} after (median of 2 servers "
                f"each; {f['errors']} errors)",
            )
        )
    ingest, retrieval = cpu["ingest"], cpu["retrieval"]
    rows.append(
        (
            "CPU per ingested chunk (ms) / per retrieval at "
            f"{retrieval['chunks']} chunks, BM25 (ms)",
            f"{ingest['cpu_ms_per_chunk']} / {retrieval['cpu_ms_per_query']}",
        )
    )
    return rows


def _q(figures: dict[str, float]) -> str:
    if not figures.get("n"):
        return "n/a"
    return f"{figures['p50']:.1f} / {figures['p95']:.1f} / {figures['p99']:.1f}"
