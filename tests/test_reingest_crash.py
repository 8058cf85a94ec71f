"""`kill -9` of a real server during a re-ingest: each document is its old or its new version.

400 documents are ingested as version A, re-ingested as B (timed), then re-ingested as A, B, A,
and the server is killed with SIGKILL at a random moment of each (the seed is printed; set
CRASH_SEED to replay one). After each
kill, with the server down, the store is read directly: every document still has a head (never
neither version), and the head's version has exactly the chunks it counts. Then, with the server
restarted, the listing shows the same version of every document, and `/chat` answers a question
about a document from that version only (never the other one's text). A last, complete
re-ingest leaves no orphan: the store holds exactly the chunks the listing counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from docent.edge import EdgeStore
from docent.vectors import point_id
from tests.conftest import ADMIN_KEY, USER_KEY
from tests.support.servers import docent_server

ADMIN = {"X-API-Key": ADMIN_KEY}
ENV = {
    "ADMIN_API_KEYS": ADMIN_KEY,
    "API_KEYS": USER_KEY,
    "RATE_LIMIT_KEY": "100000/60s",
    "CHUNK_TOKENS": "64",
    "CHUNK_OVERLAP_TOKENS": "8",
}
DOCUMENTS = 400
ROUNDS = 3

pytestmark = pytest.mark.slow


def marker(i: int, version: str) -> str:
    return f"zq{i}{version.lower()}"


def documents(version: str) -> list[dict[str, Any]]:
    """Version A and B differ in text, title and length (B has more chunks than A)."""
    parts = 3 if version == "A" else 5
    return [
        {
            "id": f"doc-{i}.md",
            "title": f"Doc {i} version {version}",
            "text": f"# Doc {i}\n\n"
            + "\n\n".join(
                f"## Part {j}\n\n"
                + " ".join(f"Valve {marker(i, version)} opens at step {k}." for k in range(25))
                for j in range(parts)
            ),
        }
        for i in range(DOCUMENTS)
    ]


def ingest(url: str, version: str) -> float:
    started = time.monotonic()
    response = httpx.post(
        f"{url}/ingest", json={"documents": documents(version)}, headers=ADMIN, timeout=600
    )
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def killed_during_reingest(data: Path, version: str, after_s: float) -> None:
    """Start the server, re-ingest `version`, SIGKILL the server `after_s` into it."""
    with docent_server(ENV, str(data)) as (url, process):

        def send() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
                httpx.post(
                    f"{url}/ingest", json={"documents": documents(version)}, headers=ADMIN,
                    timeout=600,
                )  # fmt: skip

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(after_s)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        sender.join(30)


async def store_state(shard: str) -> tuple[dict[str, str], int, int]:
    """Read with the server down: {document: version of its head}, orphan chunks, all chunks."""
    store = EdgeStore(shard)
    try:
        versions: dict[str, str] = {}
        orphans = 0
        heads = await store.retrieve([point_id(f"doc-{i}.md", 0) for i in range(DOCUMENTS)])
        by_id = {str(h.payload["document_id"]): h.payload for h in heads}
        for i in range(DOCUMENTS):
            doc = f"doc-{i}.md"
            head = by_id.get(doc)
            assert head is not None, f"{doc} lost both versions"
            versions[doc] = str(head["title"]).rsplit(" ", 1)[-1]
            stale = await store.count(doc, other_than_hash=head["content_hash"])
            current = await store.count(doc) - stale
            assert current == head["chunk_count"], (doc, current, head["chunk_count"])
            orphans += stale
        return versions, orphans, await store.total()
    finally:
        await store.aclose()


def served_state(url: str, versions: dict[str, str], sample: list[str]) -> None:
    """The listing and the answers of a restarted server agree with the store's heads."""
    with httpx.Client(base_url=url, timeout=120) as client:
        listed = client.get("/documents", params={"limit": 1000}, headers=ADMIN).json()
        titles = {d["id"]: d["title"].rsplit(" ", 1)[-1] for d in listed["documents"]}
        assert titles == versions
        for doc in sample:
            i = int(doc.split("-")[1].split(".")[0])
            version = versions[doc]
            other = "B" if version == "A" else "A"
            question = f"When does valve {marker(i, 'A')} or {marker(i, 'B')} open?"
            response = client.post(
                "/chat",
                json={"question": question, "filter": {"document_id": doc}, "top_k": 8},
                headers={"Accept": "application/json", "X-API-Key": USER_KEY},
            )
            assert response.status_code == 200, response.text
            sources = response.json()["sources"]
            assert sources, f"{doc} is listed but not answered"
            for source in sources:
                assert source["title"] == f"Doc {i} version {version}", (doc, source)
                assert marker(i, other) not in source["snippet"], (doc, source)
                assert marker(i, version) in source["snippet"], (doc, source)


def test_kill_9_during_reingest_leaves_each_document_old_or_new(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    shard = str(tmp_path / "qdrant" / "docent")
    with docent_server(ENV, str(tmp_path)) as (url, _):
        ingest(url, "A")
        full_s = ingest(url, "B")  # how long one whole re-ingest takes here
    figures = []
    version = "B"
    for _ in range(ROUNDS):
        version = "B" if version == "A" else "A"
        after_s = rng.uniform(0.1, 1.0) * full_s
        killed_during_reingest(tmp_path, version, after_s)
        versions, orphans, total = asyncio.run(store_state(shard))
        counts = {v: list(versions.values()).count(v) for v in "AB"}
        figures.append(f"kill at {after_s:.2f}s: A {counts['A']} B {counts['B']} orphans {orphans}")
        # Documents of both versions first (where a kill lands mid-switch), then any others.
        mixed = [d for d, v in versions.items() if v == version][:10]
        mixed += [d for d, v in versions.items() if v != version][:10]
        sample = mixed + rng.sample(sorted(versions), 5)
        with docent_server(ENV, str(tmp_path)) as (url, _):
            served_state(url, versions, sample)

    with docent_server(ENV, str(tmp_path)) as (url, _):
        ingest(url, "B")
        listed = httpx.get(f"{url}/documents?limit=1000", headers=ADMIN, timeout=60).json()
    versions, orphans, total = asyncio.run(store_state(shard))
    print(f"\nseed {seed}, whole re-ingest {full_s:.2f}s; " + "; ".join(figures))
    assert set(versions.values()) == {"B"}
    assert orphans == 0
    assert total == sum(d["chunks"] for d in listed["documents"])


class FailingStore:
    """Fault injection for the moments a random kill rarely hits: the real Edge store, failing
    on its n-th write of heads (the flip half done) or its n-th delete (flipped, not cleaned)."""

    def __init__(self, store: EdgeStore, *, head_write: int = 0, delete: int = 0) -> None:
        self._store = store
        self._head_write, self._delete = head_write, delete
        self.head_writes = self.deletes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def upsert(self, points: Any) -> None:
        if any(p.payload["position"] == 0 for p in points):
            self.head_writes += 1
            if self.head_writes == self._head_write:
                raise ConnectionError("crash while the heads flip")
        await self._store.upsert(points)

    async def delete(self, document_id: str, *, other_than_hash: str | None = None) -> int:
        self.deletes += 1
        if self.deletes == self._delete:
            raise ConnectionError("crash after the flip, before the old version is gone")
        return await self._store.delete(document_id, other_than_hash=other_than_hash)


@pytest.mark.parametrize("fault", [{"head_write": 2}, {"delete": 10}])
async def test_a_crash_while_versions_switch_shows_each_document_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: dict[str, int]
) -> None:
    import docent.ingest
    from docent.generation import Usage
    from docent.ingest import DocumentIn, Ingestor
    from docent.retrieval import retrieve
    from docent.vectors import SearchFilter

    monkeypatch.setattr(docent.ingest, "WRITE_BATCH", 40)  # 100 heads: three head writes
    store = EdgeStore(str(tmp_path / "edge"))

    def batch(version: str) -> list[DocumentIn]:
        return [
            DocumentIn(id=d["id"], text=d["text"], title=d["title"])
            for d in documents(version)[:100]
        ]

    def ingestor(backend: Any) -> Ingestor:
        return Ingestor(backend, None, chunk_tokens=64, overlap_tokens=8, model=None)

    await ingestor(store).ingest(batch("A"))
    with pytest.raises(ConnectionError):
        await ingestor(FailingStore(store, **fault)).ingest(batch("B"))

    heads, _ = await store.documents(1000, None)
    versions = {str(h.payload["document_id"]): str(h.payload["title"])[-1] for h in heads}
    assert len(versions) == 100  # every document listed, none lost
    if "head_write" in fault:
        assert sorted(versions.values()).count("B") == 40  # the first head write flipped 40
    else:
        assert set(versions.values()) == {"B"}
    for doc, version in list(versions.items())[::7]:
        i = int(doc.split("-")[1].split(".")[0])
        sources = await retrieve(
            store, None, f"valve {marker(i, 'A')} {marker(i, 'B')}", top_k=10,
            search_filter=SearchFilter(document_id=doc), usage=Usage(),
        )  # fmt: skip
        assert sources, doc
        texts = " ".join(s.text for s in sources)
        assert marker(i, version) in texts
        assert marker(i, "B" if version == "A" else "A") not in texts

    retried = await ingestor(store).ingest(batch("B"))
    heads, _ = await store.documents(1000, None)
    assert {str(h.payload["title"])[-1] for h in heads} == {"B"}
    assert await store.total() == sum(int(h.payload["chunk_count"]) for h in heads)
    assert retried.documents == 100
    await store.aclose()
