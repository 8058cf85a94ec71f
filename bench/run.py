"""`make bench`: Docent measured beside the physical limit, in one run on this machine.

    python -m bench.run [--smoke] [--out DIR] [--only chat,ingest,...]

Sections, one module each (each writes `<section>.json` to the output folder; `summary.md`,
from bench/report.py, tabulates them against the targets):

- chat (bench/chat.py): time to first chunk and to `done` through the bundled app under
  uvicorn, against calling the model stand-in directly plus one vector search, at 1, 10 and
  50 streams.
- ingest (bench/ingest.py): chunks/s on the embedded default, embedding requests batched vs
  per chunk, re-ingest.
- retrieval (bench/retrieval.py): Docent's retrieval code vs the engine's own query time at
  20,000 chunks.
- coldstart (bench/coldstart.py): each Lambda handler from a fresh interpreter to its first
  response, lazy vs eager.
- memory (bench/memory.py): RSS of the bundled app idle, after ingest, and holding open SSE
  streams.
- limiter (bench/limiter.py): the cost of one sliding-window check on each store.
- protocols: what MCP and the OpenAI protocol add to an answer over /chat (bench/protocols.py).
- sites: `docent ingest` of a generated 150-file MkDocs project, wall time (bench/sites.py).
- cpu: CPU time per streamed token, chat request, ingested chunk and retrieval (bench/cpu.py).

`--smoke` runs every section at toy sizes (seconds): `make test` runs it so the suite cannot rot.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import chat, coldstart, cpu, deploy, ingest, limiter, memory, protocols, retrieval, sites
from bench.fixtures import ROOT
from bench.machine import machine
from bench.report import summary, update_readme
from bench.sizes import FULL, SMOKE, Sizes

__all__ = ["FULL", "SECTIONS", "SMOKE", "main", "run"]

DEFAULT_OUT = ROOT / "bench" / "results"
# Every section, in the order a full run takes them: name -> its function (sizes, work folder).
# A plain function (it drives child processes) runs in a worker thread, a coroutine on the loop.
SECTIONS: dict[str, Callable[[Sizes, Path], Any]] = {
    "chat": chat.bench_chat,
    "ingest": ingest.bench_ingest,
    "retrieval": retrieval.bench_retrieval,
    "coldstart": coldstart.bench_coldstart,
    "memory": memory.bench_memory,
    "limiter": limiter.bench_limiter,
    "protocols": protocols.bench_protocols,
    "deploy": deploy.bench_deploy,
    "sites": sites.bench_sites,
    "cpu": cpu.bench_cpu,
}


async def run(sections: Sequence[str], sizes: Sizes, out: Path, smoke: bool) -> dict[str, Any]:
    """Run `sections` in order, each in its own scratch folder; write their figures and the
    summary to `out`."""
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
            measure = SECTIONS[section]
            if inspect.iscoroutinefunction(measure):
                figures = await measure(sizes, work)
            else:
                figures = await asyncio.to_thread(measure, sizes, work)
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
