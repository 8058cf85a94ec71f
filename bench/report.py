"""The bench report: the targets each section's figures are held to, the summary table
(bench/results/summary.md) and the README's copy of it. The sections run in bench/run.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import deploy, protocols


@dataclass(frozen=True)
class Target:
    """A target of the issue: the figure it reads from a section's results, and its bound."""

    label: str
    section: str
    figure: Callable[[dict[str, Any]], Any]
    kind: str  # at_most | at_least | exactly
    bound: Any
    unit: str = ""  # with its own spacing: " ms", "x"

    def met(self, value: Any) -> bool:
        if self.kind == "at_most":
            return bool(value <= self.bound)
        if self.kind == "at_least":
            return bool(value >= self.bound)
        return bool(value == self.bound)

    @property
    def text(self) -> str:
        sign = {"at_most": "<= ", "at_least": ">= "}.get(self.kind, "")
        bound = "yes" if self.bound is True else f"{self.bound:,}"
        return f"{sign}{bound}{self.unit}"


TARGETS = [
    Target(
        "Chat: added time to first chunk, p50 at the most streams (50)",
        "chat",
        lambda r: _top(r)["overhead_ttft_p50_ms"],
        "at_most",
        5,
        " ms",
    ),
    Target(
        "Chat: errors at the most streams (50)",
        "chat",
        lambda r: _top(r)["docent"]["errors"],
        "exactly",
        0,
    ),
    Target(
        "Chat: `sources` before the model's first token (all levels)",
        "chat",
        lambda r: all(level["sources_before_model_first_token"] for level in r["levels"].values()),
        "exactly",
        True,
    ),
    Target(
        "Ingest: chunks/s, embedded default",
        "ingest",
        lambda r: r["embedded"]["chunks_per_s"],
        "at_least",
        1000,
    ),
    Target(
        "Ingest: fewer embedding requests than one per chunk",
        "ingest",
        lambda r: r["with_embeddings"]["reduction"],
        "at_least",
        10,
        "x",
    ),
    Target(
        "Ingest: re-ingest of the unchanged corpus, speed-up",
        "ingest",
        lambda r: min(r["embedded"]["reingest_speedup"], r["with_embeddings"]["reingest_speedup"]),
        "at_least",
        20,
        "x",
    ),
    Target(
        "Ingest: embedding calls on re-ingest",
        "ingest",
        lambda r: r["with_embeddings"]["reingest_embedding_requests"],
        "exactly",
        0,
    ),
    Target(
        "Retrieval: added to the engine, BM25 p50 (ms)",
        "retrieval",
        lambda r: r["bm25"]["added_p50_ms"],
        "at_most",
        1,
        " ms",
    ),
    Target(
        "Retrieval: added to the engine, hybrid p50 (ms)",
        "retrieval",
        lambda r: r["hybrid"]["added_p50_ms"],
        "at_most",
        1,
        " ms",
    ),
    Target(
        "Cold start: health to first response (s)",
        "coldstart",
        lambda r: r["health_lazy"]["first_response_s"],
        "at_most",
        0.25,
        " s",
    ),
    Target(
        "Cold start: chat to first response (s)",
        "coldstart",
        lambda r: r["chat_lazy"]["first_response_s"],
        "at_most",
        0.8,
        " s",
    ),
    Target(
        "Cold start: eager / lazy, health",
        "coldstart",
        lambda r: r["health_speedup"],
        "at_least",
        3,
        "x",
    ),
    Target(
        "Cold start: eager / lazy, chat",
        "coldstart",
        lambda r: r["chat_speedup"],
        "at_least",
        3,
        "x",
    ),
    Target(
        "Sites: `docent ingest` of a 150-file MkDocs project, embedded default",
        "sites",
        lambda r: r["ingest_seconds"],
        "at_most",
        15,
        " s",
    ),
]


TARGETS += [Target(label, "protocols", figure, "at_most", bound, " ms")
            for label, figure, bound in protocols.TARGETS]  # fmt: skip


def _top(chat: dict[str, Any]) -> dict[str, Any]:
    """The figures at the highest concurrency measured."""
    levels: dict[str, Any] = chat["levels"]
    return dict(levels[max(levels, key=int)])


TARGETS += deploy.targets(Target)


def summary(results: dict[str, dict[str, Any]], about: dict[str, Any], smoke: bool) -> str:
    lines = [
        "# Docent benchmark" + (" (smoke run: toy sizes, figures mean nothing)" if smoke else ""),
        "",
        f"{about['date']} on {about['cores']} cores ({about['cpu']}), {about['memory_gib']} GiB, "
        f"Python {about['python']}. CPU calibration: {about['calibration_ms']} ms for a fixed "
        "pure-Python workload (wall and CPU figures both scale with it).",
        "",
        "| Measure | Figure | Target | Met |",
        "|---|---|---|---|",
    ]
    from bench import cpu

    for target in TARGETS + cpu.TARGETS:
        if target.section not in results:
            continue
        try:
            value = target.figure(results[target.section])
        except (KeyError, TypeError):
            value = None
        ok = value is not None and target.met(value)
        lines.append(f"| {target.label} | {value} | {target.text} | {'yes' if ok else '**no**'} |")
    lines += ["", "| Figure | Value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in details(results) + deploy.details(results)]
    lines += [f"| {k} | {v} |" for k, v in cpu.details(results)]
    return "\n".join(lines) + "\n"


def details(results: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    chat = results.get("chat")
    if chat:
        for level, figures in chat["levels"].items():
            d, o = figures["docent"], figures["direct"]
            rows.append(
                (
                    f"Chat at {level} streams: first chunk p50/p95/p99 (ms), Docent vs direct",
                    f"{_q(d['ttft_ms'])} vs {_q(o['ttft_ms'])}",
                )
            )
            rows.append(
                (
                    f"Chat at {level} streams: whole stream p50/p95/p99 (ms), Docent vs direct",
                    f"{_q(d['total_ms'])} vs {_q(o['total_ms'])}",
                )
            )
    ingest = results.get("ingest")
    if ingest:
        e, w = ingest["embedded"], ingest["with_embeddings"]
        rows.append(
            (
                "Ingest: files / chunks, first ingest (s), re-ingest (s)",
                f"{ingest['files']} / {e['chunks']}, {e['seconds']}, {e['reingest_seconds']}",
            )
        )
        rows.append(
            (
                "Ingest: embedding requests per 1,000 chunks, batched vs one per chunk",
                f"{w['requests_per_1000_chunks']} vs {w['per_chunk_requests_per_1000_chunks']}",
            )
        )
    retrieval = results.get("retrieval")
    if retrieval:
        for mode in ("bm25", "hybrid"):
            r = retrieval[mode]
            rows.append(
                (
                    f"Retrieval at {retrieval['chunks']} chunks, {mode}: p50/p95/p99 (ms), "
                    "Docent vs engine",
                    f"{_q(r['docent_ms'])} vs {_q(r['engine_ms'])}",
                )
            )
    cold = results.get("coldstart")
    if cold:
        for name in ("health", "chat", "ingest"):
            rows.append(
                (
                    f"Cold start, {name}: first response lazy vs eager, median (best) (s)",
                    f"{cold[f'{name}_lazy']['first_response_s']} "
                    f"({cold[f'{name}_lazy']['first_response_best_s']}) vs "
                    f"{cold[f'{name}_eager']['first_response_s']} "
                    f"({cold[f'{name}_eager']['first_response_best_s']})",
                )
            )
    memory = results.get("memory")
    if memory:
        rows.append(
            (
                f"Memory (RSS MB): idle / after {memory['ingested_chunks']} chunks / "
                f"{memory['open_streams']} open streams",
                f"{memory['idle_mb']} / {memory['after_ingest_mb']} / "
                f"{memory['with_open_streams_mb']} ({memory['per_stream_kb']} KB per stream)",
            )
        )
    limiter = results.get("limiter")
    if limiter:
        for name, figures in limiter.items():
            if not isinstance(figures, dict):
                continue
            rows.append((f"Limiter check, {name}: p50/p95/p99 (ms)", _q(figures["check_ms"])))
    return rows


def _q(figures: dict[str, float]) -> str:
    if not figures.get("n"):
        return "n/a"
    return f"{figures['p50']:.2f} / {figures['p95']:.2f} / {figures['p99']:.2f}"


README_START = "<!-- bench:start (make bench writes this table) -->"
README_END = "<!-- bench:end -->"


def update_readme(readme: Path, table: str) -> bool:
    """Put the latest table between the README's bench markers; False if they are missing."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    body = table.split("\n", 1)[1].strip()  # without the summary's own title
    readme.write_text(f"{head}{README_START}\n{body}\n{README_END}{tail}")
    return True
