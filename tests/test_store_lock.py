"""One process per embedded store: a refused second process changes nothing in the holder's files.

Each test races real processes for one QDRANT_PATH: `docent serve` against a second `docent
serve`, against `docent ingest` and `docent ask` (with DOCENT_URL at a closed port, so they try
the store themselves), and two `docent ingest` against each other. The holder's files are
fingerprinted (every file's SHA-256) before the loser runs and compared after it has exited.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, USER_KEY
from tests.support.servers import docent_server, free_port

ADMIN = {"X-API-Key": ADMIN_KEY}
ENV = {"ADMIN_API_KEYS": ADMIN_KEY, "API_KEYS": USER_KEY, "RATE_LIMIT_KEY": "10000/60s"}
HELD = "held by another process"

pytestmark = pytest.mark.slow


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under `folder` (names, sizes and contents), as SHA-256 digests."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def documents(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}-{i}.md",
            "text": f"# {prefix} {i}\n\n"
            + " ".join(f"The {prefix} widget {i} hums at {k} hertz." for k in range(60)),
        }
        for i in range(n)
    ]


def cli(data: Path, *args: str, folder: Path | None = None) -> subprocess.Popen[str]:
    """`docent ARGS` on the store under `data`, with no server to talk to (a closed port)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(data),
        "QDRANT_PATH": str(data / "qdrant"),
        "DOCENT_URL": f"http://127.0.0.1:{free_port()}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "docent.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def still_writes(url: str, round_: int) -> None:
    """The holder ingests, lists and deletes as before, and says it is ready."""
    with httpx.Client(base_url=url, headers=ADMIN, timeout=60) as client:
        ingested = client.post("/ingest", json={"documents": documents(f"after{round_}", 3)})
        assert ingested.status_code == 200, ingested.text
        assert ingested.json()["chunks"] >= 3
        listed = {d["id"] for d in client.get("/documents").json()["documents"]}
        assert {f"after{round_}-{i}.md" for i in range(3)} <= listed
        deleted = client.delete(f"/documents/after{round_}-0.md")
        assert deleted.status_code == 200, deleted.text
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ok", ready.text


def test_a_second_server_and_the_cli_change_nothing_in_a_serving_store(tmp_path: Path) -> None:
    shard = tmp_path / "qdrant" / "docent"
    folder = tmp_path / "docs"
    folder.mkdir()
    for doc in documents("cli", 5):
        (folder / doc["id"]).write_text(doc["text"])
    with docent_server(ENV, str(tmp_path)) as (url, holder):
        response = httpx.post(
            f"{url}/ingest", json={"documents": documents("held", 20)}, headers=ADMIN, timeout=60
        )
        assert response.status_code == 200, response.text
        before = fingerprint(shard)

        # A second server on the same folder starts (it touches no store at start), but every
        # request that needs the store is a 503 that names no path, and it is not ready.
        with docent_server(ENV, str(tmp_path)) as (second, _):
            chat = httpx.post(
                f"{second}/chat",
                json={"question": "widget hertz"},
                headers={"Accept": "application/json"},
                timeout=30,
            )
            ready = httpx.get(f"{second}/health/ready", timeout=30)
            ingest = httpx.post(
                f"{second}/ingest", json={"documents": documents("x", 1)}, headers=ADMIN
            )
        assert chat.status_code == 503, chat.text
        assert chat.json()["error"]["code"] == "unavailable"
        assert HELD in chat.json()["error"]["message"]
        assert str(tmp_path) not in chat.text
        assert ready.status_code == 503 and ready.json()["checks"]["vectors"]["ok"] is False
        assert ingest.status_code == 503
        assert fingerprint(shard) == before
        still_writes(url, 1)

        # The CLI, with no server at DOCENT_URL, tries the store itself and is refused cleanly.
        before = fingerprint(shard)
        outcomes = []
        for args in (("ingest", str(folder)), ("ask", "How fast does the widget hum?")):
            process = cli(tmp_path, *args)
            _, err = process.communicate(timeout=120)
            outcomes.append((args[0], process.returncode, err))
        assert fingerprint(shard) == before
        for command, code, err in outcomes:
            assert code == 1, (command, err)
            assert HELD in err and "Traceback" not in err, (command, err)
            assert f"QDRANT_PATH={tmp_path / 'qdrant'}" in err
        still_writes(url, 2)
        assert holder.poll() is None


def test_two_cli_ingests_racing_for_one_folder_leave_one_whole_store(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for doc in documents("race", 300):
        (folder / doc["id"]).write_text(doc["text"])
    racers = [cli(tmp_path, "ingest", str(folder)) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in racers]
    results = [(p.returncode, out, err) for p, (out, err) in zip(racers, outputs, strict=True)]
    reference = cli(tmp_path / "reference", "ingest", str(folder))
    expected, _ = reference.communicate(timeout=600)

    codes = sorted(code for code, _, _ in results)
    refused = [err for code, _, err in results if code == 1]
    # Usually one holds the store and the other is refused; if the first was done before the
    # second started, the second found every document unchanged. Never a broken store.
    assert codes in ([0, 1], [0, 0]), results
    for err in refused:
        assert HELD in err and "Traceback" not in err, err
    winner = next(out for code, out, _ in results if code == 0)
    assert winner.strip().splitlines()[-1] == expected.strip().splitlines()[-1] or codes == [0, 0]

    # The store the race left equals a clean ingest's: same documents, same chunk counts.
    with docent_server(ENV, str(tmp_path)) as (url, _):
        raced = httpx.get(f"{url}/documents?limit=1000", headers=ADMIN, timeout=60).json()
    with docent_server(ENV, str(tmp_path / "reference")) as (url, _):
        clean = httpx.get(f"{url}/documents?limit=1000", headers=ADMIN, timeout=60).json()

    def counts(listing: dict[str, Any]) -> dict[str, int]:
        return {d["id"]: d["chunks"] for d in listing["documents"]}

    assert len(counts(clean)) == 300
    assert counts(raced) == counts(clean)
