"""Code run in a new interpreter at the repository's root, as a cold start runs it: what a
module imports at import time, and what registers itself there, shows only in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fresh_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """The standard output of `code` (stripped) run by this Python in a new process; raises
    `CalledProcessError` (with its stderr) if the code fails."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )
    return done.stdout.strip()
