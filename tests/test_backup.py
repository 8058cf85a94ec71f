"""`docent snapshot` and `docent restore`: a restored index answers exactly as the original did.

The snapshot is taken from a serving `docent serve` (through its admin route, while another
client keeps ingesting), restored by the CLI into a fresh QDRANT_PATH, and served again: the
document listing and the `/chat` answers and sources are identical. A restore refuses a store a
server holds and a damaged file, and changes nothing then. With a Qdrant server (QDRANT_URL; here
the project's own stand-in, `docent qdrant-standin`, not a real Qdrant) the same commands go
through the server's snapshot API, and a restore brings back identical answers too.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, USER_KEY, corpus_documents
from tests.support.servers import docent_server, free_port

ADMIN = {"X-API-Key": ADMIN_KEY}
ENV = {"ADMIN_API_KEYS": ADMIN_KEY, "API_KEYS": USER_KEY, "RATE_LIMIT_KEY": "100000/60s"}
QUESTIONS = [
    "How do I install Acme with pip?",
    "How long do refunds take?",
    "What is the API rate limit?",
    "Which port does the Acme server listen on?",
]

pytestmark = pytest.mark.slow


def cli(
    data: Path, *args: str, url: str | None = None, qdrant: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(data),
        "QDRANT_PATH": str(data / "qdrant"),
        "DOCENT_URL": url or f"http://127.0.0.1:{free_port()}",
        "DOCENT_API_KEY": ADMIN_KEY,
    }
    if qdrant:
        env["QDRANT_URL"] = qdrant
    return subprocess.run(
        [sys.executable, "-m", "docent.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def answers(url: str) -> list[dict[str, Any]]:
    """Each question's answer and sources (without the per-request id), and the listing."""
    found: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for question in QUESTIONS:
            response = client.post(
                "/chat",
                json={"question": question},
                headers={"Accept": "application/json", "X-API-Key": USER_KEY},
            )
            assert response.status_code == 200, response.text
            body = response.json()
            found.append({k: body[k] for k in ("answer", "answered", "citations", "sources")})
        listing = client.get("/documents", params={"limit": 1000}, headers=ADMIN).json()
    found.append({d["id"]: (d["chunks"], d["content_hash"]) for d in listing["documents"]})
    return found


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_snapshot_taken_while_serving_restores_to_identical_answers(tmp_path: Path) -> None:
    original = tmp_path / "original"
    during, after = (
        tmp_path / "backups" / "during.snapshot",
        tmp_path / "backups" / "after.snapshot",
    )
    with docent_server(ENV, str(original)) as (url, _):
        response = httpx.post(
            f"{url}/ingest", json={"documents": corpus_documents()}, headers=ADMIN, timeout=60
        )
        assert response.status_code == 200, response.text

        # Writes keep coming while a snapshot is taken: they wait for it, or come after it.
        def churn() -> None:
            for n in range(10):
                text = f"# Extra {n}\n\n" + "Nothing about refunds here. " * 200
                extra = {"id": f"extra-{n}.md", "text": text}
                httpx.post(f"{url}/ingest", json={"documents": [extra]}, headers=ADMIN, timeout=60)
                httpx.delete(f"{url}/documents/extra-{n}.md", headers=ADMIN, timeout=60)

        writer = threading.Thread(target=churn)
        writer.start()
        taken = cli(original, "snapshot", str(during), url=url)
        writer.join(120)
        assert taken.returncode == 0, taken.stderr
        assert url in taken.stdout  # taken by the server that holds the store
        assert cli(original, "snapshot", str(after), url=url).returncode == 0
    # Scored against the files, as the restored copy will be: the running shard's BM25 statistics
    # still count the deleted extra documents until it is reloaded (or vacuumed).
    with docent_server(ENV, str(original)) as (url, _):
        expected = answers(url)

    # The snapshot taken under writes is one consistent state: the corpus, at most one of the
    # extra documents (each was deleted right after it was ingested), each one whole.
    assert cli(tmp_path / "r1", "restore", str(during)).returncode == 0
    with docent_server(ENV, str(tmp_path / "r1")) as (url, _):
        listing = httpx.get(f"{url}/documents", headers=ADMIN, timeout=60).json()["documents"]
    extras = [d for d in listing if d["id"].startswith("extra-")]
    assert len(extras) <= 1 and len(listing) - len(extras) == len(corpus_documents())
    assert total_points(tmp_path / "r1") == sum(d["chunks"] for d in listing)

    # Restored into a fresh path, the index answers exactly as the original did.
    done = cli(tmp_path / "r2", "restore", str(after))
    assert done.returncode == 0, done.stderr
    with docent_server(ENV, str(tmp_path / "r2")) as (url, _):
        assert answers(url) == expected


def total_points(data: Path) -> int:
    from docent.edge import EdgeStore

    async def count() -> int:
        store = EdgeStore(str(data / "qdrant" / "docent"))
        try:
            return await store.total()
        finally:
            await store.aclose()

    return asyncio.run(count())


async def test_a_snapshot_waits_for_an_ingest_caught_between_its_body_and_its_head(
    tmp_path: Path,
) -> None:
    """The race the served test can only hit by chance, made certain: an ingest is held after
    writing a new version's body and before its head (the commit), a snapshot is asked for, and
    another ingest comes after it. The snapshot waits for the first, goes before the second, and
    archives whole documents only: every point it holds belongs to a listed document's version."""
    from docent.edge import EdgeStore
    from docent.ingest import DocumentIn, Ingestor
    from docent.vectors import point_id

    def note(n: int, words: str) -> DocumentIn:
        return DocumentIn(id=f"note-{n}.md", text=f"# Note {n}\n\n" + f"{words}. " * 300)

    store = EdgeStore(str(tmp_path / "live"))
    ingestor = Ingestor(store, None, chunk_tokens=64, overlap_tokens=8, model=None)
    await ingestor.ingest([note(1, "First words"), note(2, "Second words")])
    held, release = asyncio.Event(), asyncio.Event()
    upsert = store.upsert

    async def hold_the_head(points: Any) -> None:
        if any(p.id == point_id("note-1.md", 0) for p in points):
            held.set()
            await release.wait()
        await upsert(points)

    store.upsert = hold_the_head  # type: ignore[method-assign]
    changing = asyncio.create_task(ingestor.ingest([note(1, "Changed words")]))
    await held.wait()  # note 1's new body is in the store; its head still names the old version
    archive = str(tmp_path / "taken.snapshot")
    taking = asyncio.create_task(ingestor.snapshot(archive))
    await asyncio.sleep(0.3)
    later = asyncio.create_task(ingestor.ingest([note(3, "Third words")]))
    await asyncio.sleep(0.3)
    assert not taking.done() and not later.done()  # the snapshot waits; the newcomer waits for it
    release.set()
    await asyncio.gather(changing, taking, later)
    await store.aclose()

    restored = EdgeStore(str(tmp_path / "restored"))
    try:
        await restored.restore(archive)
        heads, _ = await restored.documents(100, None)
        listed = {h.payload["document_id"]: h.payload for h in heads}
        assert sorted(listed) == ["note-1.md", "note-2.md"]  # note 3 came after the snapshot
        assert "Changed" in str((await restored.retrieve([point_id("note-1.md", 0)]))[0].payload)
        assert await restored.total() == sum(p["chunk_count"] for p in listed.values())
    finally:
        await restored.aclose()


def test_restore_refuses_a_held_store_and_a_damaged_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    snapshot = tmp_path / "good.snapshot"
    with docent_server(ENV, str(data)) as (url, _):
        documents = corpus_documents()[:2]
        httpx.post(f"{url}/ingest", json={"documents": documents}, headers=ADMIN, timeout=60)
        assert cli(data, "snapshot", str(snapshot), url=url).returncode == 0
        before = fingerprint(data / "qdrant" / "docent")
        # A server holds the store: a restore (which replaces it) is refused, cleanly.
        held = cli(data, "restore", str(snapshot))
        assert held.returncode == 1
        assert "held by another process" in held.stderr and "Traceback" not in held.stderr
        assert fingerprint(data / "qdrant" / "docent") == before
        expected = answers(url)

    before = fingerprint(data / "qdrant" / "docent")
    # A damaged snapshot (cut short) is refused before anything is replaced.
    damaged = tmp_path / "damaged.snapshot"
    damaged.write_bytes(snapshot.read_bytes()[: snapshot.stat().st_size // 2])
    # Not a snapshot at all, though a valid archive.
    foreign = tmp_path / "foreign.snapshot"
    foreign.write_bytes(gzip.compress(b"not a tar"))
    for bad in (damaged, foreign, tmp_path / "missing.snapshot"):
        refused = cli(data, "restore", str(bad))
        assert refused.returncode == 1, refused.stdout
        assert "Traceback" not in refused.stderr and "snapshot" in refused.stderr, refused.stderr
        assert fingerprint(data / "qdrant" / "docent") == before
    with docent_server(ENV, str(data)) as (url, _):
        assert answers(url) == expected


async def test_a_qdrant_snapshot_needs_a_server_and_says_so() -> None:
    from docent.errors import ConfigurationError
    from docent.qdrant import QdrantStore

    store = QdrantStore("docent", location=":memory:")
    for call in (store.snapshot, store.restore):
        with pytest.raises(ConfigurationError, match="QDRANT_URL"):
            await call("/nonexistent/snapshot")
    await store.aclose()


def test_a_qdrant_server_snapshot_restores_to_identical_answers(tmp_path: Path) -> None:
    """Server mode (QDRANT_URL), against the Qdrant stand-in's snapshot API: `docent snapshot`
    and the admin `GET /snapshot` each save the collection; after more ingests and deletes,
    `docent restore` of either brings back the answers, sources and listing exactly."""
    from tests.support.qdrant import qdrant_standin

    with qdrant_standin() as qdrant:
        env = {**ENV, "QDRANT_URL": qdrant}
        with docent_server(env, str(tmp_path / "server")) as (url, _):
            response = httpx.post(
                f"{url}/ingest", json={"documents": corpus_documents()}, headers=ADMIN, timeout=60
            )
            assert response.status_code == 200, response.text
            expected = answers(url)

            saved = tmp_path / "backups" / "cli.snapshot"
            taken = cli(tmp_path / "cli", "snapshot", str(saved), qdrant=qdrant)
            assert taken.returncode == 0, taken.stderr
            assert json.loads(taken.stdout)["bytes"] == saved.stat().st_size > 0
            routed = httpx.get(f"{url}/snapshot", headers=ADMIN, timeout=120)
            assert routed.status_code == 200, routed.text
            served = tmp_path / "backups" / "route.snapshot"
            served.write_bytes(routed.content)
            # The server's snapshots were downloaded, then deleted there: none is left behind.
            listed = httpx.get(f"{qdrant}/collections/docent/snapshots").json()["result"]
            assert listed == []

            for snapshot in (saved, served):
                # More writes: a new document, a changed one, a deleted one.
                documents = corpus_documents()
                changed = {**documents[1], "text": documents[1]["text"] + "\n\nRevised."}
                extra = {"id": "extra.md", "text": "# Extra\n\nRefunds take one hour. " * 20}
                response = httpx.post(
                    f"{url}/ingest", json={"documents": [changed, extra]}, headers=ADMIN
                )
                assert response.status_code == 200, response.text
                gone = httpx.delete(f"{url}/documents/{documents[0]['id']}", headers=ADMIN)
                assert gone.status_code == 200, gone.text
                assert answers(url) != expected

                done = cli(tmp_path / "cli", "restore", str(snapshot), qdrant=qdrant)
                assert done.returncode == 0, done.stderr
                assert answers(url) == expected
