"""Build and check tools (SAM CLI, cfn-lint, hadolint, moto's server) live in .venv-tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".venv-tools"


def tool(name: str) -> str:
    """The path of a tool from requirements-tools.txt, installing the tools venv when missing."""
    path = TOOLS / "bin" / name
    if not path.exists():
        subprocess.run(["make", "tools"], cwd=ROOT, check=True)
    return str(path)
