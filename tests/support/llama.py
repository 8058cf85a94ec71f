"""A real OpenAI-compatible chat server: llama.cpp (llama-cpp-python[server]) with SmolLM2-135M.

`scripts/setup_llama.sh` (run by `make test`) builds the venv and fetches the model; this fixture
starts the server on a free port for the session and stops it after.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import _wait, free_port

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DOCENT_CACHE") or Path.home() / ".cache/docent")
MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
VENV = ROOT / ".venv-llama"
MODEL_NAME = "smollm2-135m-instruct"


def ensure_llama() -> None:
    if not (VENV / ".installed").exists() or not MODEL.exists():
        subprocess.run([str(ROOT / "scripts/setup_llama.sh")], cwd=ROOT, check=True)


@pytest.fixture(scope="session")
def llama_url() -> Iterator[str]:
    """The base URL (`.../v1`) of a llama.cpp server answering as `smollm2-135m-instruct`."""
    ensure_llama()
    port = free_port()
    process = subprocess.Popen(
        [str(VENV / "bin/python"), "-m", "llama_cpp.server", "--model", str(MODEL),
         "--model_alias", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "4096", "--n_threads", "2", "--verbose", "false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait(
            lambda: httpx.get(f"{url}/models", timeout=2).status_code == 200, "llama", process, 120
        )
        yield url
    finally:
        process.terminate()
        process.wait(20)
