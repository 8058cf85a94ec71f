"""The `docent` command, run as a user would: embedded store, then through a running server."""

from __future__ import annotations

import json
import os
import re
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


def gc_collections(url: str) -> dict[str, float]:
    """`python_gc_collections_total` by generation, from the server's /metrics."""
    from tests.conftest import ADMIN_KEY

    text = httpx.get(f"{url}/metrics", headers={"X-API-Key": ADMIN_KEY}).text
    found = re.findall(r'^python_gc_collections_total\{generation="(\d)"\} (\S+)$', text, re.M)
    return {generation: float(count) for generation, count in found}


def test_serve_collects_garbage_rarely_while_it_answers(tmp_path: Path) -> None:
    """`docent serve` freezes its start-up heap and collects the young generation every 10,000
    allocations: 120 answers, 40 streaming at a time, run no collection of the old generations
    and at most three of the young (CPython's default, 700, ran 27 and two of the middle one)."""
    import asyncio

    from tests.conftest import ADMIN_KEY, corpus_documents
    from tests.support.servers import docent_server

    async def answers(url: str, rounds: int, streams: int) -> list[str]:
        limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

            async def ask(n: int) -> str:
                body = {"question": f"How do I configure the server? ({n})"}
                return (await client.post("/chat", json=body)).text

            texts = []
            for r in range(rounds):
                texts += await asyncio.gather(*(ask(r * streams + n) for n in range(streams)))
            return texts

    # Paced extractive answers: a stream stays open about a second, as a model's would.
    env = {"ADMIN_API_KEYS": ADMIN_KEY, "RATE_LIMIT_ANON": "1000/60s", "EXTRACTIVE_PACE_MS": "20",
           "MAX_CONNECTIONS_PER_CLIENT": "0"}  # fmt: skip
    with docent_server(env, str(tmp_path)) as (url, _):
        admin = {"X-API-Key": ADMIN_KEY}
        body = {"documents": corpus_documents()}
        assert httpx.post(f"{url}/ingest", json=body, headers=admin, timeout=60).status_code == 200
        asyncio.run(answers(url, 1, 4))  # first-use imports and connections
        before = gc_collections(url)
        texts = asyncio.run(answers(url, 3, 40))
        after = gc_collections(url)
    assert len(texts) == 120 and all('"type":"done"' in t for t in texts)
    assert set(before) == {"0", "1", "2"}
    ran = {generation: after[generation] - before[generation] for generation in before}
    assert ran["1"] == ran["2"] == 0, ran
    assert ran["0"] <= 3, ran


def test_settle_heap_freezes_what_start_up_built(tmp_path: Path) -> None:
    """In a new interpreter, after the bundle's start-up: the request path's modules imported (and,
    with a model, its encoding built and aiohttp loaded), the heap frozen, the threshold raised."""
    from tests.support.interpreter import fresh_python

    code = (
        "import gc, json, sys\n"
        "from docent.config import load_settings\n"
        "from docent.serving import settle_heap, GEN0_THRESHOLD\n"
        "from docent import tokens\n"
        "settings = load_settings(openai_base_url='http://127.0.0.1:9/v1', openai_api_key='k',"
        " sample_corpus='')\n"
        "frozen = settle_heap(settings)\n"
        "print(json.dumps({'frozen': frozen, 'left': len(gc.get_objects()),"
        " 'threshold': gc.get_threshold()[0] == GEN0_THRESHOLD,"
        " 'encoding': tokens._encoding.cache_info().currsize,"
        " 'modules': all(m in sys.modules for m in"
        " ('docent.chat', 'docent.ingest', 'docent.health', 'aiohttp', 'openai'))}))\n"
    )
    env = {**os.environ, "QDRANT_PATH": str(tmp_path / "qdrant"), "MODEL_HTTP_CLIENT": "auto"}
    result = json.loads(fresh_python(code, env=env))
    assert result["modules"] and result["threshold"] and result["encoding"] == 1, result
    assert result["frozen"] > 50_000 and result["left"] < 1_000, result
