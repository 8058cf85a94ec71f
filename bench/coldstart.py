"""One cold start: `python -m bench.coldstart FUNCTION [--eager]` in a fresh interpreter.

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


if __name__ == "__main__":
    main()
