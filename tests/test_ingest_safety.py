"""Ingest safety: concurrent retries, crashes between batches, deletion leaves nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from docent.edge import EdgeStore
from docent.ingest import DocumentIn, Ingestor
from docent.vectors import ChunkPoint
from tests.conftest import Docent


def corpus(n: int, sections: int = 6) -> list[dict[str, Any]]:
    return [
        {
            "id": f"doc-{i}.md",
            "text": f"# Doc {i}\n\n"
            + "\n\n".join(
                f"## Part {j}\n\n" + " ".join(f"Doc {i} part {j} sentence {k}." for k in range(40))
                for j in range(sections)
            ),
        }
        for i in range(n)
    ]


def small_chunks(store: Any) -> Ingestor:
    """An ingestor of small chunks, so a few documents make several writes."""
    return Ingestor(store, None, chunk_tokens=64, overlap_tokens=8, model=None)


def listing(docent: Docent) -> dict[str, int]:
    with docent.admin() as client:
        return {d["id"]: d["chunks"] for d in client.get("/documents").json()["documents"]}


def test_the_same_request_sent_twice_at_once_leaves_one_copy(docent: Docent) -> None:
    documents = corpus(5)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: docent.ingest(documents), range(2)))

    chunks = sorted(r["chunks"] for r in results)
    assert chunks[0] == 0 and chunks[1] > 0  # one wrote, the other found it unchanged
    counts = listing(docent)
    assert sum(counts.values()) == chunks[1]
    with docent.admin() as client:
        for doc_id, n in counts.items():
            removed = client.delete(f"/documents/{doc_id}").json()["deleted_chunks"]
            assert removed == n  # exactly its chunks: no duplicate points anywhere
    assert listing(docent) == {}


class CrashingStore:
    """Fault injection: the real Edge store, dying on its n-th write (a crash between batches)."""

    def __init__(self, store: EdgeStore, fail_on: int) -> None:
        self._store = store
        self._writes = 0
        self._fail_on = fail_on

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        self._writes += 1
        if self._writes == self._fail_on:
            raise ConnectionError("crash between batches")
        await self._store.upsert(points)


@pytest.mark.parametrize("fail_on", [1, 2, 3])
async def test_a_crash_mid_ingest_then_a_retry_ends_with_the_exact_count(
    tmp_path: Path, fail_on: int
) -> None:
    documents = [DocumentIn(id=d["id"], text=d["text"]) for d in corpus(12)]
    store = EdgeStore(str(tmp_path / "edge"))

    import docent.ingest

    original = docent.ingest.WRITE_BATCH
    docent.ingest.WRITE_BATCH = 40
    try:
        with pytest.raises(ConnectionError):
            await small_chunks(CrashingStore(store, fail_on)).ingest(documents)
        retried = await small_chunks(store).ingest(documents)
        again = await small_chunks(store).ingest(documents)
        reference_store = EdgeStore(str(tmp_path / "reference"))
        reference = await small_chunks(reference_store).ingest(documents)
    finally:
        docent.ingest.WRITE_BATCH = original

    assert await store.total() == await reference_store.total() == reference.chunks
    assert again.unchanged == len(documents) and again.chunks == 0
    assert retried.chunks > 0
    await store.aclose()
    await reference_store.aclose()


@pytest.mark.slow
def test_a_killed_ingest_process_then_a_retry_ends_with_the_exact_count(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for doc in corpus(1500, sections=2):
        (folder / doc["id"]).write_text(doc["text"])
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DOCENT_URL": "http://127.0.0.1:9",
        "CHUNK_TOKENS": "64",
        "CHUNK_OVERLAP_TOKENS": "8",
    }

    def ingest(data: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "docent.cli", "ingest", str(folder)],
            env={**env, "QDRANT_PATH": str(data)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    victim = ingest(tmp_path / "crashed")
    assert victim.stderr is not None
    seen = ""
    deadline = time.monotonic() + 120
    # Kill it once the progress bar shows batches written (a chunk count), before it is done.
    while not re.search(r"ingesting:\s+\d+%.*chunks=[1-9]\d*", seen):
        assert time.monotonic() < deadline and victim.poll() is None, seen[-500:]
        seen += victim.stderr.read(1)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    retry = ingest(tmp_path / "crashed")
    fresh = ingest(tmp_path / "fresh")
    retried_out, _ = retry.communicate(timeout=300)
    fresh_out, _ = fresh.communicate(timeout=300)

    assert victim.returncode == -signal.SIGKILL
    retried = json.loads(retried_out.strip().splitlines()[-1])
    expected = json.loads(fresh_out.strip().splitlines()[-1])

    async def totals() -> tuple[int, int]:
        crashed, clean = (
            EdgeStore(str(tmp_path / "crashed" / "docent")),
            EdgeStore(str(tmp_path / "fresh" / "docent")),
        )
        try:
            return await crashed.total(), await clean.total()
        finally:
            await crashed.aclose()
            await clean.aclose()

    crashed_total, fresh_total = asyncio.run(totals())
    assert crashed_total == fresh_total == expected["chunks"]
    assert retried["documents"] == expected["documents"] == 1500
    assert 0 < retried["unchanged"] < 1500  # the killed run had committed some, not all


class CountingShard:
    """The real Edge shard, its flushes counted."""

    def __init__(self, shard: Any) -> None:
        self._shard = shard
        self.flushes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shard, name)

    def flush(self) -> None:
        self.flushes += 1
        self._shard.flush()


async def test_an_ingest_flushes_the_shard_once_however_many_writes_it_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush writes out every segment: an ingest's writes (several upserts, a delete per
    changed document) share one, at its end; a write of its own still flushes at once."""
    import docent.ingest

    monkeypatch.setattr(docent.ingest, "WRITE_BATCH", 40)
    store = EdgeStore(str(tmp_path / "edge"))
    ingestor = small_chunks(store)
    await ingestor.ingest([DocumentIn(id="warm.md", text="# Warm\n\nThe collection is made.")])
    shard = CountingShard(store._shard)
    store._shard = shard
    documents = [DocumentIn(id=d["id"], text=d["text"]) for d in corpus(12)]
    first = await ingestor.ingest(documents)
    assert first.chunks > 3 * 40  # several upserts of 40
    assert shard.flushes == 1
    # A new version of each: upserts, then one delete (with points to remove) per document.
    changed = [DocumentIn(id=d.id, text=d.text.replace("sentence", "line")) for d in documents]
    second = await ingestor.ingest(changed)
    assert second.chunks == first.chunks and shard.flushes == 2
    assert await store.total() == first.chunks + 1  # the old versions are gone
    assert await ingestor.delete("warm.md") == 1
    assert shard.flushes == 3  # a delete of its own
    await store.aclose()


CHILD = """
import asyncio, json, os, signal, sys
from docent.edge import EdgeStore
from docent.ingest import DocumentIn, Ingestor

async def main() -> None:
    store = EdgeStore(sys.argv[1])
    ingestor = Ingestor(store, None, chunk_tokens=64, overlap_tokens=8, model=None)
    await ingestor.ingest([DocumentIn(id="warm.md", text="# Warm\\n\\nThe collection is made.")])

    async def killed() -> None:  # the batch's end, its flush not made: the process dies there
        print(json.dumps({"unflushed": store._unflushed}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    store._flush_batched = killed
    documents = [DocumentIn(id=d["id"], text=d["text"]) for d in json.loads(sys.argv[2])]
    await ingestor.ingest(documents)

asyncio.run(main())
"""


def test_an_ingest_killed_before_its_flush_is_whole_on_the_next_open(tmp_path: Path) -> None:
    """The batch's writes are in Edge's write-ahead log before each returns: a process killed
    with them all unflushed leaves every one to the next open, which replays the log."""
    path = tmp_path / "edge"
    documents = corpus(12)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), json.dumps(documents)],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert json.loads(child.stdout) == {"unflushed": True}

    async def reopened() -> None:
        store = EdgeStore(str(path))
        reference = small_chunks(EdgeStore(str(tmp_path / "reference")))
        inputs = [DocumentIn(id=d["id"], text=d["text"]) for d in documents]
        expected = await reference.ingest(inputs)
        assert await store.total() == expected.chunks + 1
        heads, _ = await store.documents(100, None)
        assert len(heads) == 13
        again = await small_chunks(store).ingest(inputs)
        assert again.unchanged == 12 and again.chunks == 0  # each version whole, as written
        await store.aclose()
        await reference.store.aclose()

    asyncio.run(reopened())
