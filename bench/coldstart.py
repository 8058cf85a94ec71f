"""The coldstart section, and one cold start: `python -m bench.coldstart FUNCTION [--eager]`.

`bench_coldstart` runs the section: each Lambda handler from a fresh interpreter (this module,
run as the child below) to its first response, lazy vs eager.

Imports the function's Lambda module and invokes its `handler` with the function's sample event,
as the Lambda runtime does on a new container, and prints the timings as JSON. `--eager` first
imports every package the layer ships, as a handler without lazy imports would.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    from bench.sizes import Sizes

ROOT = Path(__file__).resolve().parents[1]
EVENTS = {"health": "health.json", "chat": "chat.json", "ingest": "ingest.json"}
EAGER = (
    "fastapi",
    "mangum",
    "pydantic",
    "httpx",
    "aws_lambda_powertools",
    "qdrant_client",
    "qdrant_edge",
    "openai",
    "tiktoken",
    "upstash_redis",
    "upstash_ratelimit",
    "redis",
    "boto3",
    "prometheus_client",
)


class Context:
    function_name = "docent-bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:docent-bench"
    aws_request_id = "c0ffee00-0000-4000-8000-00000000bench"
    function_version = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    name = sys.argv[1]
    eager = "--eager" in sys.argv[2:]
    if eager:
        for package in EAGER:
            importlib.import_module(package)
    event = json.loads((ROOT / "events" / EVENTS[name]).read_text())
    module = importlib.import_module(f"functions.{name}.app")
    imported = time.perf_counter()
    response = module.handler(event, Context())
    answered = time.perf_counter()
    heavy = [m for m in ("qdrant_client", "openai", "grpc", "mcp") if m in sys.modules]
    print(
        json.dumps(
            {
                "function": name,
                "eager": eager,
                "status": response.get("statusCode"),
                "import_s": imported - STARTED,
                "first_response_s": answered - STARTED,
                "heavy_modules_loaded": heavy,
            }
        )
    )


def bench_coldstart(sizes: Sizes, work: Path) -> dict[str, Any]:
    """The section: each handler's cold start, lazy and eager, the median of `coldstart_runs`."""
    # Imported here, not above: this module is also the measured child, timed from its start.
    import os
    import shutil
    import statistics

    from bench.fixtures import child_figures, prepared_index

    # A container starts on an index someone filled: Docent's own docs, ingested once and
    # copied for every run, so the chat event gets a real answer with sources.
    prepared = prepared_index(work / "prepared")
    base_env = {**os.environ, "SAMPLE_CORPUS": "", "LOG_LEVEL": "WARNING"}
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
                command += ["--eager"] if eager else []
                runs.append(child_figures(command, env, cwd=ROOT))
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


if __name__ == "__main__":
    main()
