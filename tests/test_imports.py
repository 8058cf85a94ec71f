"""Import rules (docs/architecture.md): what the core package may import, what health loads,
and the package's public surface. A new module that breaks a rule fails here, not on Lambda."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import docent

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "layers" / "common" / "docent"
# Development tools that live in the package for `docent gateway` and `docent qdrant-standin`;
# the command line itself. Production modules never import them.
TOOLING = {"docent.cli", "docent.gateway", "docent.qdrantstandin"}
# Never imported by any module of the package: the app layer, the tests, the benchmarks.
OUTSIDE = ("functions", "tests", "bench")
# What the health function must not load: each costs a cold start seconds.
HEAVY = ("qdrant_client", "openai", "tiktoken", "numpy")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports in functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_core_package_imports_no_app_test_bench_or_tool_module() -> None:
    broken = []
    for module, imported in _modules().items():
        for name in imported:
            top = name.split(".")[0]
            if top in OUTSIDE or (module not in TOOLING and name in TOOLING):
                broken.append(f"{module} imports {name}")
    assert not broken


def test_the_rules_catch_a_breaking_import(tmp_path: Path) -> None:
    """The scan sees lazy imports inside functions: the kind the rules are about."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from functions.bundle import app\n    import docent.gateway\n")
    assert {"functions.bundle", "docent.gateway"} <= _imports(sample)


def test_health_loads_no_heavy_client_library() -> None:
    probe = (
        "import json, sys\n"
        "import docent.health, functions.health.app\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert json.loads(done.stdout.splitlines()[-1]) == []
    # The probe can see one: importing the vector store client shows up.
    probe_seen = (
        "import json, sys, docent.qdrant, qdrant_client; print('qdrant_client' in sys.modules)"
    )
    seen = subprocess.run([sys.executable, "-c", probe_seen], capture_output=True, text=True)
    assert seen.stdout.strip() == "True"


def test_all_lists_the_production_modules_and_each_one_imports() -> None:
    public = {
        info.name for info in pkgutil.iter_modules([str(PACKAGE)]) if not info.name.startswith("_")
    }
    tools = {name.removeprefix("docent.") for name in TOOLING}
    assert set(docent.__all__) == (public - tools) | {"__version__"}
    for name in public:
        importlib.import_module(f"docent.{name}")


def test_docent_serve_finds_the_app_through_the_installed_entry_point() -> None:
    from fastapi import FastAPI

    from docent.cli import bundled_app

    module, _, name = bundled_app().partition(":")
    assert isinstance(getattr(importlib.import_module(module), name), FastAPI)


def test_docent_ingest_works_without_the_cli_extra(tmp_path: Path) -> None:
    """`pip install .` without `[cli]` has no tqdm: the command still ingests, counting."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nAlpha widgets are blue.\n")
    no_tqdm = (
        "import sys; sys.modules['tqdm'] = None; import docent.cli; sys.exit(docent.cli.main())"
    )
    done = subprocess.run(
        [sys.executable, "-c", no_tqdm, "ingest", str(folder)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "QDRANT_PATH": str(tmp_path / "qdrant"),
             "DOCENT_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ingesting: 1/1 files" in done.stderr


def test_the_benchmarks_use_the_tests_only_through_the_public_harness() -> None:
    from tests.support import harness

    for path in sorted((ROOT / "bench").rglob("*.py")):
        used = {name for name in _imports(path) if name.split(".")[0] == "tests"}
        allowed = {"tests.support.harness"} | {
            f"tests.support.harness.{n}" for n in harness.__all__
        }
        assert used <= allowed, f"{path.relative_to(ROOT)} imports {sorted(used - allowed)}"


def test_the_layer_build_leaves_out_every_development_tool() -> None:
    """The common layer's build (layers/common/Makefile) deletes exactly the tooling modules."""
    import re

    makefile = (ROOT / "layers" / "common" / "Makefile").read_text()
    (listed,) = re.findall(r"^DEV_ONLY := (.+)$", makefile, re.M)
    assert set(listed.split()) == {name.removeprefix("docent.") + ".py" for name in TOOLING}


# What a cold start of the health and chat functions must not load (each was measured on the
# built layer, Python 3.13): pydantic-settings (Settings is a plain pydantic model),
# pydantic.v1 (FastAPI imports it to refuse v1 models when a route has a response model: the
# liveness route has none), docent.generation in health (only chat answers), and tiktoken in an
# extractive chat's first answer (its budget and usage are estimated; o200k_base costs 0.2 s).
LAZY = {
    "HealthFunction": ("pydantic_settings", "pydantic.v1", "docent.generation", "tiktoken"),
    "ChatBufferedFunction": ("pydantic_settings", "tiktoken"),
}
COLD_START = """
import gc, json, sys
import app
imported = sorted(m for m in sys.modules if m in sys.argv[2].split(","))
gc_on = gc.isenabled()

class Context:
    function_name = "docent-imports"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:docent-imports"
    aws_request_id = "c0ffee00-0000-4000-8000-000000000002"

    def get_remaining_time_in_millis(self):
        return 30_000

response = app.handler(json.loads(open(sys.argv[1]).read()), Context())
answered = sorted(m for m in sys.modules if m in sys.argv[3].split(","))
print(json.dumps({"status": response["statusCode"], "body": response["body"], "gc": gc_on,
                  "imported": imported, "answered": answered}))
"""


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded index holding docs/ (Docent's own documentation), as the bench's."""
    folder = tmp_path_factory.mktemp("docs-index")
    subprocess.run(
        [sys.executable, "-m", "docent.cli", "ingest", str(ROOT / "docs")],
        cwd=ROOT,
        env={**os.environ, "QDRANT_PATH": str(folder / "qdrant"), "SAMPLE_CORPUS": "",
             "DOCENT_URL": "http://127.0.0.1:9"},
        capture_output=True,
        check=True,
    )  # fmt: skip
    return folder / "qdrant"


@pytest.mark.slow
@pytest.mark.timeout(1200)  # `sam build`, once per session
@pytest.mark.parametrize(
    ("function", "event_file"),
    [("HealthFunction", "health.json"), ("ChatBufferedFunction", "chat.json")],
)
def test_a_built_function_cold_start_loads_none_of_what_it_made_lazy(
    sam_built: Path, docs_index: Path, tmp_path: Path, function: str, event_file: str
) -> None:
    """The built function under Python 3.13 and the built layer, as Lambda runs it (read-only,
    no bytecode written), answering its sample event on an index of docs/."""
    import shutil

    from tests.support.lambdaruntime import python313, runtime_site

    lazy = LAZY[function]
    qdrant = tmp_path / "qdrant"
    shutil.copytree(docs_index, qdrant)
    done = subprocess.run(
        [python313(), "-c", COLD_START, str(ROOT / "events" / event_file),
         ",".join((*lazy, "fastapi")), ",".join((*lazy, "docent.retrieval"))],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": f"{sam_built / function}:{sam_built / 'CommonLayer' / 'python'}:"
            f"{runtime_site()}",
            "AWS_LAMBDA_FUNCTION_NAME": "docent-imports",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SINGLE_INSTANCE_TRIAL": "true",
            "QDRANT_PATH": str(qdrant),
            "SAMPLE_CORPUS": "",
            "LOG_LEVEL": "WARNING",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 200, result
    assert result["gc"] is True  # the function resumes collection after its imports
    # The probes see what is loaded: FastAPI at import; retrieval only where chat answered.
    assert result["imported"] == ["fastapi"]
    if function == "ChatBufferedFunction":
        body = json.loads(result["body"])
        assert body["answered"] is True and body["sources"], body  # passages were budgeted
        assert body["usage"]["prompt_tokens"] > 0
        assert result["answered"] == ["docent.retrieval"]
    else:
        assert result["answered"] == []
