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
