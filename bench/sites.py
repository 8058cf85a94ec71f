"""Bench section `sites`: `docent ingest` of a generated 150-file MkDocs project, as a user runs it.

The project has what real MkDocs docs have: mkdocs.yml with Python tags, nested folders, front
matter, attr_list ids, repeated headings, code blocks, snippet and code includes. The figure is
the wall time of the whole command (a fresh interpreter, the embedded default, an empty store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FULL_FILES = 150
SMOKE_FILES = 15

CONFIG = """site_name: Bench
site_url: https://bench.example.test/
theme:
  name: material
markdown_extensions:
  - attr_list
  - toc:
      permalink: true
  - pymdownx.snippets:
      base_path: [".", "snippets"]
  - pymdownx.emoji:
      emoji_index: !!python/name:material.extensions.emoji.twemoji
"""


def page(number: int) -> str:
    words = " ".join(f"term{(number * 7 + i) % 997}" for i in range(60))
    sections = []
    for s in range(6):
        sections.append(
            f"## Step {s} of part {number} {{ #part-{number}-step-{s} }}\n\n{words}.\n\n"
            f"```python\nresult_{s} = configure(part={number}, step={s})\n```\n\n"
            f"## Notes\n\nRepeated heading {s}: {words[:200]}.\n"
        )
    include = '--8<-- "shared.md"\n\n{* ../src/example.py ln[1:4] *}\n' if number % 5 == 0 else ""
    return f"---\ntitle: Page {number}\n---\n\n# Page {number}\n\n{include}\n" + "\n".join(sections)


def make_project(root: Path, files: int) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "snippets").mkdir()
    (root / "src").mkdir()
    (root / "mkdocs.yml").write_text(CONFIG)
    (root / "snippets" / "shared.md").write_text("A shared snippet about rate limits.\n")
    (root / "src" / "example.py").write_text("def example() -> int:\n    return 1\n\n\n# end\n")
    for number in range(files):
        folder = root / "docs" / f"section-{number % 10}"
        folder.mkdir(exist_ok=True)
        name = "index.md" if number < 10 else f"page-{number}.md"
        (folder / name).write_text(page(number))
    return root


async def bench_sites(sizes: Any, work: Path) -> dict[str, Any]:
    files = FULL_FILES if sizes.corpus_files >= 1000 else SMOKE_FILES
    project = make_project(work / "project", files)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "QDRANT_PATH": str(work / "data" / "qdrant"),
        "DOCENT_URL": "http://127.0.0.1:9",  # nothing listens: the embedded store
        "SAMPLE_CORPUS": "",
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "docent.cli", "ingest", str(project)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"docent ingest failed: {result.stderr[-2000:]}")
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "files": files,
        "documents": counts["documents"],
        "chunks": counts["chunks"],
        "ingest_seconds": round(seconds, 2),
    }
