"""`sam build` of the repository, once per test session (the layer and every function)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import tool

ROOT = Path(__file__).resolve().parents[2]


# This machine's architecture, so the built code runs here (the template's default is arm64).
ARCHITECTURE = "x86_64"


def sam_build(build_dir: Path, cache_dir: Path) -> Path:
    """`make sam-build ARCH=x86_64`'s build, into `build_dir`."""
    result = subprocess.run(
        [tool("sam"), "build", "--build-dir", str(build_dir), "--cache-dir", str(cache_dir),
         "--parameter-overrides", f"Architecture={ARCHITECTURE}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0", "LAMBDA_ARCH": ARCHITECTURE},
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return build_dir


@pytest.fixture(scope="session")
def sam_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """.aws-sam/build as `sam build` leaves it (in a temporary folder)."""
    root = tmp_path_factory.mktemp("sam")
    return sam_build(root / "build", root / "cache")
