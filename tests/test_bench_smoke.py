"""The benchmark suite at toy sizes, so `make bench` cannot silently rot.

Timings are not asserted (a busy machine would flake them); what is asserted is that every
section runs end to end, writes its figures, and that the figures that are counts, not times,
say what the full run's targets need.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.services
def test_every_bench_section_runs_and_writes_its_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert set(results) == {"machine", "chat", "ingest", "retrieval", "coldstart", "memory",
                            "limiter", "protocols", "deploy", "sites", "cpu"}  # fmt: skip
    assert results["sites"]["documents"] == results["sites"]["files"] > 0

    for level in results["chat"]["levels"].values():
        assert level["docent"]["errors"] == 0 and level["direct"]["errors"] == 0
        assert level["docent"]["ttft_ms"]["n"] == level["docent"]["requests"]
        assert level["sources_before_model_first_token"] is True

    ingest = results["ingest"]
    assert ingest["embedded"]["chunks"] > ingest["files"]
    assert ingest["embedded"]["reingest_unchanged"] == ingest["files"]
    embeddings = ingest["with_embeddings"]
    assert embeddings["reingest_embedding_requests"] == 0
    assert embeddings["per_chunk_requests_per_1000_chunks"] == 1000.0
    assert embeddings["embedding_requests"] < embeddings["chunks"] / 10

    retrieval = results["retrieval"]
    assert retrieval["chunks"] >= 300
    for mode in ("bm25", "hybrid"):
        assert retrieval[mode]["docent_ms"]["n"] == retrieval[mode]["engine_ms"]["n"] > 0

    cold = results["coldstart"]
    for name in ("health", "chat", "ingest"):
        assert cold[f"{name}_lazy"]["status"] == 200
        assert cold[f"{name}_eager"]["status"] == 200
    assert cold["health_lazy"]["heavy_modules_loaded"] == []
    assert "qdrant_client" in cold["health_eager"]["heavy_modules_loaded"]

    deploy = results["deploy"]  # the built functions under Python 3.13
    for name in ("health", "chat", "ingest"):
        for variant in ("shipped", "warm_cache", "no_bytecode"):
            assert deploy[f"{name}_{variant}"]["status"] == 200
        assert deploy["sizes_mb"][name] <= 200

    memory = results["memory"]
    assert memory["idle_mb"] > 0 and memory["with_open_streams_mb"] >= memory["idle_mb"]
    assert set(results["limiter"]) >= {"memory", "redis", "upstash_gateway"}

    protocols = results["protocols"]
    assert {f["n"] for f in protocols["ms"].values()} == {protocols["rounds"]}

    summary = (tmp_path / "summary.md").read_text()
    assert "| Measure | Figure | Target | Met |" in summary
    assert "None" not in summary  # every target's figure was found


@pytest.mark.slow
@pytest.mark.services
def test_the_cpu_section_counts_its_work_and_tabulates_it(tmp_path: Path) -> None:
    # The baseline's own packages (BENCH_CPU_BASELINE_SITE): a module every process that has the
    # folder on its path runs at start-up, noting its pid.
    site = tmp_path / "baseline-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os\n"
        "with open(os.path.join(os.path.dirname(__file__), 'started'), 'a') as f:\n"
        "    f.write(f'{os.getpid()}\\n')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--only", "cpu", "--out", str(tmp_path)],
        cwd=ROOT,
        # before and after, in one run
        env={**os.environ, "BENCH_CPU_BASELINE": "HEAD", "BENCH_CPU_BASELINE_SITE": str(site)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cpu = json.loads((tmp_path / "cpu.json").read_text())
    machine = json.loads((tmp_path / "machine.json").read_text())
    assert machine["calibration_ms"] > 0 and cpu["calibration_ms"] > 0

    from bench.cpu import LONG_ANSWER, SHORT_ANSWER, model_tokens
    from bench.run import SMOKE

    assert set(cpu["levels"]) == {str(n) for n in SMOKE.cpu_streams}
    for level, figures in cpu["levels"].items():
        count = SMOKE.cpu_streams[int(level)]
        assert figures["requests_per_phase"] == count
        assert figures["errors"] == dict.fromkeys(figures["errors"], 0)
        assert set(figures["errors"]) == {"direct_long", "direct_short", "docent_long",
                                          "docent_short"}  # fmt: skip
        # Every answer came through whole, however its tokens were framed.
        assert figures["answers"] == figures["answers_identical"] == 2 * count
        assert figures["tokens_per_answer"] == {
            "long": model_tokens(LONG_ANSWER), "short": model_tokens(SHORT_ANSWER)
        }  # fmt: skip
        assert 1 <= figures["frames_per_long_answer"] <= model_tokens(LONG_ANSWER)
        assert figures["first_chunk_ms"]["docent"]["n"] == count
        assert figures["sources_lead_over_model_call_ms"]["n"] == 2 * count  # every call seen
        # The client apart from the load asked at least once per thread, and each of its model
        # calls was matched to the stand-in's arrival stamp.
        probe = figures["probe"]
        assert probe["requests"] >= 2 and probe["errors"] == probe["unmatched"] == 0, probe
        assert probe["sources_lead_over_model_call_ms"]["n"] == probe["requests"]
        for process in ("docent", "standin_direct"):
            assert figures[process]["cpu_ms_per_request_long"] > 0
    ab = cpu["before_and_after"]
    assert ab["revision"] == "HEAD" and set(ab["levels"]) == {str(n) for n in SMOKE.cpu_streams}
    assert [f["errors"] for f in ab["levels"].values()] == [0] * len(SMOKE.cpu_streams)
    # The baseline's two servers, and no other process, had the folder on their path.
    assert len((site / "started").read_text().split()) == len(ab["runs"]["before"]) == 2
    top = ab["levels"][str(max(SMOKE.cpu_streams))]  # enough tokens for /proc's clock ticks
    assert top["before_cpu_us_per_token"] > 0 and top["after_cpu_us_per_token"] > 0
    assert cpu["ingest"]["chunks"] > cpu["ingest"]["documents"] > 0
    assert cpu["retrieval"]["queries"] == SMOKE.retrieval_queries

    summary = (tmp_path / "summary.md").read_text()
    assert f"CPU calibration: {machine['calibration_ms']} ms" in summary
    assert "| CPU: Docent server per streamed token, 50 streams (µs) |" in summary
    assert "<= 80 µs" in summary and "<= 4 ms" in summary and "<= 0.5 ms" in summary
    assert "Before (HEAD) and after, same run, alternating, at 10 streams" in summary
    assert "None" not in summary


def test_the_readme_table_is_replaced_between_its_markers(tmp_path: Path) -> None:
    from bench.report import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold table\n{README_END}\noutro\n")
    assert update_readme(readme, "# Docent benchmark\n\nmachine line\n\n| a | b |\n")
    text = readme.read_text()
    assert "old table" not in text and "# Docent benchmark" not in text
    assert text.startswith("intro\n") and text.endswith("\noutro\n")
    assert f"{README_START}\nmachine line\n\n| a | b |\n{README_END}" in text
    readme.write_text("no markers")
    assert not update_readme(readme, "# t\n\nx\n")
