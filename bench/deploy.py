"""Cold starts of the built Lambda functions, as Lambda runs them (`deploy` section).

`sam build`, then each function's first response from a fresh Python 3.13 interpreter (the
template's runtime) with only its built code and layers on the path and PYTHONDONTWRITEBYTECODE=1
(Lambda's /opt is read-only), in the single-instance trial configuration on an index holding
docs/. Beside it, the same packages installed from their wheels as sources:

- `warm_cache`: after a first run wrote their bytecode (a developer's machine, the ideal);
- `no_bytecode`: read-only, nothing compiled (the layer before it shipped bytecode).

Also each function's size with its layers (the budget is 200 MB unzipped).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.fixtures import child_figures, prepared_index

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = {
    # name: (built function, its layers, sample event)
    "health": ("HealthFunction", ("CommonLayer",), "health.json"),
    "chat": ("ChatBufferedFunction", ("CommonLayer",), "chat.json"),
    "ingest": ("IngestFunction", ("CommonLayer", "IngestLayer"), "ingest.json"),
}
DRIVER = """
import time
started, cpu_started = time.perf_counter(), time.process_time()
import importlib, json, sys


class Context:
    function_name = "docent-bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:docent-bench"
    aws_request_id = "c0ffee00-0000-4000-8000-0000000bench"
    function_version = "1"

    def get_remaining_time_in_millis(self):
        return 30_000


event = json.loads(open(sys.argv[1]).read())
module = importlib.import_module("app")
imported = time.perf_counter()
response = module.handler(event, Context())
answered, cpu = time.perf_counter(), time.process_time() - cpu_started
print(json.dumps({"status": response.get("statusCode"), "import_s": imported - started,
                  "first_response_s": answered - started, "first_response_cpu_s": cpu}))
"""


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _sources_install(target: Path) -> None:
    """The layer's requirements as pip installs them (sources, no bytecode), plus docent."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", "--only-binary=:all:", "--implementation", "cp", "--python-version",
         "3.13", "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
         "--target", str(target), "-r", str(ROOT / "layers/common/requirements.txt")],
        check=True,
    )  # fmt: skip
    shutil.copytree(
        ROOT / "layers/common/docent",
        target / "docent",
        ignore=shutil.ignore_patterns("__pycache__"),
    )


def import_profile(
    python: str, path: list[Path], env: dict[str, str], top: int = 8
) -> list[tuple[str, float]]:
    """`python -X importtime -c "import app"`: the top-level packages the function's import
    spends most in (cumulative seconds, the first importer of each counted)."""
    done = subprocess.run(
        [python, "-X", "importtime", "-c", "import app"],
        env={**env, "PYTHONPATH": ":".join(str(p) for p in path)},
        capture_output=True,
        text=True,
        check=True,
    )
    # A module's line follows its imports' lines: app's direct imports are the depth-1 lines
    # since the depth-0 line before app's (`site`'s own imports come before it).
    totals: dict[str, float] = {}
    pending: dict[str, float] = {}
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        if depth == 0:
            totals, pending = (pending, {}) if name.strip() == "app" else (totals, {})
        elif depth == 1:
            package = name.strip().split(".")[0]
            pending[package] = pending.get(package, 0.0) + int(parts[1]) / 1e6
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [(package, round(seconds, 3)) for package, seconds in ranked]


def _one(python: str, path: list[Path], event: Path, env: dict[str, str]) -> dict[str, Any]:
    pythonpath = ":".join(str(p) for p in path)
    return child_figures([python, "-c", DRIVER, str(event)], {**env, "PYTHONPATH": pythonpath})


def bench_deploy(sizes: Any, work: Path) -> dict[str, Any]:
    from tests.support.harness import python313, sam_build

    python = python313()
    built = sam_build(work / "build", work / "cache")
    prepared = prepared_index(work / "prepared")
    sources = work / "sources"  # stays without bytecode (no_bytecode)
    _sources_install(sources)
    warm = work / "warm"  # gets its bytecode written by a first run (warm_cache)
    shutil.copytree(sources, warm, symlinks=True)
    runs = max(1, sizes.coldstart_runs)
    out: dict[str, Any] = {"python": python, "runs": runs, "sizes_mb": {}}
    for name, (function, layers, event_file) in FUNCTIONS.items():
        task = built / function
        shipped = [task, *(built / layer / "python" for layer in layers)]
        out["sizes_mb"][name] = round(sum(_size(p) for p in shipped) / 2**20, 1)
        event = ROOT / "events" / event_file
        figures: dict[str, list[dict[str, Any]]] = {}
        for variant in ("shipped", "no_bytecode", "warm_cache"):
            path = {"shipped": shipped, "no_bytecode": [task, sources], "warm_cache": [task, warm]}[
                variant
            ]
            for run in range(runs + (1 if variant == "warm_cache" else 0)):
                copy = work / f"{name}-{variant}-{run}"
                shutil.copytree(prepared, copy)
                env = {
                    "PATH": os.environ["PATH"],
                    "HOME": str(copy),
                    "AWS_LAMBDA_FUNCTION_NAME": f"docent-bench-{name}",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "SINGLE_INSTANCE_TRIAL": "true",
                    "QDRANT_PATH": str(copy / "qdrant"),
                    "ADMIN_API_KEYS": "admin-example-key",
                    "SAMPLE_CORPUS": "",
                    "LOG_LEVEL": "WARNING",
                    "POWERTOOLS_METRICS_NAMESPACE": "DocentBench",
                }
                if variant != "warm_cache":
                    env["PYTHONDONTWRITEBYTECODE"] = "1"
                result = _one(python, path, event, env)
                if variant == "warm_cache" and run == 0:
                    continue  # the first run writes the bytecode cache
                figures.setdefault(variant, []).append(result)
        assert not list(sources.rglob("__pycache__"))  # no_bytecode stayed so
        for variant, results in figures.items():
            out[f"{name}_{variant}"] = {
                "status": results[0]["status"],
                "first_response_s": round(
                    statistics.median(r["first_response_s"] for r in results), 3
                ),
                "first_response_best_s": round(min(r["first_response_s"] for r in results), 3),
                "import_s": round(statistics.median(r["import_s"] for r in results), 3),
                "first_response_cpu_s": round(
                    statistics.median(r["first_response_cpu_s"] for r in results), 3
                ),
            }
        out[f"{name}_shipped_imports"] = import_profile(
            python, shipped, {**env, "PYTHONDONTWRITEBYTECODE": "1"}
        )
        out[f"{name}_shipped_vs_warm_cpu"] = round(
            out[f"{name}_shipped"]["first_response_cpu_s"]
            / out[f"{name}_warm_cache"]["first_response_cpu_s"],
            2,
        )
        out[f"{name}_shipped_vs_warm"] = round(
            out[f"{name}_shipped"]["first_response_s"]
            / out[f"{name}_warm_cache"]["first_response_s"],
            2,
        )
    return out


def targets(target: Any) -> list[Any]:
    """The section's targets, built with bench.report's Target. The bytecode's cost is CPU: on a
    shared machine the wall-time ratio of two variants measured minutes apart is mostly load
    (0.55 to 1.54 in one run), so the ratio targets read CPU time (wall time stays in details)."""
    return [
        target(
            "Built layer (3.13, read-only): health first response (s)",
            "deploy",
            lambda r: r["health_shipped"]["first_response_s"],
            "at_most",
            0.3,
            " s",
        ),
        target(
            "Built layer (3.13, read-only): chat first response (s)",
            "deploy",
            lambda r: r["chat_shipped"]["first_response_s"],
            "at_most",
            0.6,
            " s",
        ),
        target(
            "Built layer vs warm bytecode cache, chat (CPU ratio)",
            "deploy",
            lambda r: r["chat_shipped_vs_warm_cpu"],
            "at_most",
            1.15,
            "x",
        ),
        target(
            "Built layer vs warm bytecode cache, health (CPU ratio)",
            "deploy",
            lambda r: r["health_shipped_vs_warm_cpu"],
            "at_most",
            1.15,
            "x",
        ),
        target(
            "Largest function with its layers (MB, unzipped)",
            "deploy",
            lambda r: max(r["sizes_mb"].values()),
            "at_most",
            200,
            " MB",
        ),
    ]


def details(results: dict[str, Any]) -> list[tuple[str, str]]:
    deploy = results.get("deploy")
    if not deploy:
        return []
    rows = []
    for name in FUNCTIONS:
        rows.append(
            (
                f"Built {name} on 3.13: first response, shipped bytecode vs warm cache vs "
                "no bytecode, median (s)",
                f"{deploy[f'{name}_shipped']['first_response_s']} vs "
                f"{deploy[f'{name}_warm_cache']['first_response_s']} vs "
                f"{deploy[f'{name}_no_bytecode']['first_response_s']}",
            )
        )
        rows.append(
            (
                f"Built {name} on 3.13: first response CPU, shipped vs warm cache, median (s)",
                f"{deploy[f'{name}_shipped']['first_response_cpu_s']} vs "
                f"{deploy[f'{name}_warm_cache']['first_response_cpu_s']} "
                f"({deploy[f'{name}_shipped_vs_warm_cpu']}x)",
            )
        )
        rows.append(
            (
                f"Built {name} on 3.13: its import's heaviest packages (-X importtime, s)",
                ", ".join(f"{p} {s}" for p, s in deploy[f"{name}_shipped_imports"]),
            )
        )
    sizes = ", ".join(f"{name} {mb} MB" for name, mb in deploy["sizes_mb"].items())
    rows.append(("Built functions with their layers (unzipped)", sizes))
    return rows
