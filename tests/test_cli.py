"""The `docent` command, run as a user would: embedded store, then through a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import CORPUS
from tests.support.servers import free_port

pytestmark = pytest.mark.slow


def docent(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docent.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "QDRANT_PATH": str(tmp_path / "data" / "qdrant"),
        # Nothing listens here: the CLI must fall back to the embedded store.
        "DOCENT_URL": f"http://127.0.0.1:{free_port()}",
        "SAMPLE_CORPUS": "",
    }


def test_ingest_and_ask_on_the_embedded_store(env: dict[str, str], tmp_path: Path) -> None:
    ingested = docent(["ingest", str(CORPUS)], env, tmp_path)
    again = docent(["ingest", str(CORPUS)], env, tmp_path)
    answer = docent(["ask", "How do I install Acme with pip?"], env, tmp_path)

    assert ingested.returncode == 0, ingested.stderr
    counts = json.loads(ingested.stdout.strip().splitlines()[-1])
    assert counts["documents"] == 3 and counts["chunks"] > 3
    assert json.loads(again.stdout.strip().splitlines()[-1])["unchanged"] == 3
    assert "ingesting" in ingested.stderr  # the progress bar
    assert answer.returncode == 0, answer.stderr
    assert "pip install acme-server" in answer.stdout
    assert "[S1] Installing Acme: https://docs.acme.test/install#install-with-pip" in answer.stdout


def test_ingest_goes_through_a_running_server(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    server_env = {**env, "PORT": str(port), "SAMPLE_CORPUS": ""}
    client_env = {**env, "DOCENT_URL": f"http://127.0.0.1:{port}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "docent.cli", "serve"],
        env=server_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.2)
        # The server holds the store's lock: only the API path can work now.
        ingested = docent(["ingest", str(CORPUS)], client_env, tmp_path)
        answer = docent(
            ["ask", "What status do requests over the limit get?"], client_env, tmp_path
        )
    finally:
        server.terminate()
        server.wait(20)

    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout.strip().splitlines()[-1])["documents"] == 3
    assert "429" in answer.stdout
    assert "https://docs.acme.test/limits#sliding-window" in answer.stdout
    assert (tmp_path / "data" / "admin-key").exists()


def test_bad_files_are_reported_not_crashed(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "binary.md").write_bytes(b"\x00\x01\x02garbage")
    result = docent(["ingest", str(folder)], env, tmp_path)
    assert result.returncode == 1
    assert "binary.md: binary data" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_runs_on_uvloop_and_httptools(tmp_path: Path) -> None:
    """`docent serve` loads uvicorn's C loop and parser (requirements-serve.txt) in its process."""
    from tests.support.servers import docent_server

    with docent_server({}, str(tmp_path)) as (url, process):
        assert httpx.get(f"{url}/health").status_code == 200
        maps = Path(f"/proc/{process.pid}/maps").read_text()
    assert "uvloop" in maps and "httptools" in maps


def test_serve_falls_back_to_the_plain_loop_without_the_extras(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from docent.cli import server_speedups

    # Either parser carries the slow-client bounds (tests/test_hostile.py runs against the first).
    fast = {"loop": "uvloop", "http": "docent.serving:SettingsBoundedHttpToolsProtocol"}
    assert server_speedups() == fast
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # extras not installed
    plain = {"loop": "asyncio", "http": "docent.serving:SettingsBoundedH11Protocol"}
    assert server_speedups() == plain
