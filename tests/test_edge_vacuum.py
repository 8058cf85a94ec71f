"""Dead points and the log: Edge never optimises by itself, so ingest/delete churn grows the
shard without end, and its write-ahead log takes every write's bytes until a 32 MB file is full.

The same churn (documents ingested, changed, deleted, five kept live) runs on a shard at the
default schedule (QDRANT_OPTIMIZE_DELETES=1000, but on this small shard the dead share comes
first: a vacuum per 100 dead points) and on one that never vacuums. The first stays flat after
its warm-up, its log within its small files; the second keeps growing (the fault the soak saw
as a slow creep).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from docent.edge import WAL_OPTIONS, WAL_SEGMENT_BYTES, EdgeStore, dead_path, folder_bytes
from docent.ingest import DocumentIn, Ingestor

pytestmark = pytest.mark.slow

WARM_UP = 30
CYCLES = 150


def document(n: int, revision: int = 0) -> DocumentIn:
    text = f"# Note {n}\n\n" + "\n\n".join(
        f"## Part {j}\n\n" + " ".join(f"Dial {n} turns {k + revision} notches." for k in range(40))
        for j in range(3)
    )
    return DocumentIn(id=f"note-{n}.md", text=text)


WAL_BOUND = 3 * WAL_SEGMENT_BYTES + 64 * 1024  # one closed file, the open one, the next one
LOGS: dict[str, list[int]] = {}  # each store's WAL size, sampled as the segments are


async def churn(store: EdgeStore, cycles: range) -> list[int]:
    """Ingest, change and delete documents; the shard's segment size after every tenth cycle."""
    ingestor = Ingestor(store, None, chunk_tokens=64, overlap_tokens=8, model=None)
    sizes = []
    for n in cycles:
        await ingestor.ingest([document(n)])
        await ingestor.ingest([document(n, revision=1)])  # a new version replaces the old
        if n >= 5:
            await ingestor.delete(f"note-{n - 5}.md")
        if n % 10 == 0:
            sizes.append(folder_bytes(Path(store.path) / "segments"))
            LOGS.setdefault(store.path, []).append(folder_bytes(Path(store.path) / "wal"))
    return sizes


async def test_vacuum_keeps_the_shard_flat_under_churn(tmp_path: Path) -> None:
    default = EdgeStore(str(tmp_path / "default"))  # 1000, but 100 dead points come first
    never = EdgeStore(str(tmp_path / "never"), optimize_after=0)
    figures = {}
    for name, store in (("default", default), ("never", never)):
        await churn(store, range(WARM_UP))
        base = folder_bytes(Path(store.path) / "segments")
        sizes = await churn(store, range(WARM_UP, WARM_UP + CYCLES))
        wal = LOGS[store.path]
        figures[name] = (base, max(sizes), await store.total(), store.optimizations, max(wal))
        await store.aclose()
        assert max(wal) <= WAL_BOUND, (name, wal)
        # The log went round its ring: its files were replaced, not grown (its first file is gone).
        assert not (Path(store.path) / "wal" / "open-1").exists(), sorted(
            p.name for p in (Path(store.path) / "wal").iterdir()
        )
    print(f"\nsegments bytes (after warm-up, peak, live points, optimisations, WAL max): {figures}")

    base, peak, live, optimizations, _ = figures["default"]
    assert optimizations > 0
    assert peak <= 1.05 * base
    never_base, never_peak, never_live, _, _ = figures["never"]
    assert never_live == live  # the same documents are live in all
    assert never_peak > 1.5 * never_base  # without the vacuum the dead points pile up


async def test_a_shard_made_with_edges_default_log_takes_docents_on_open(tmp_path: Path) -> None:
    """A shard created before (Edge's 32 MB log files) gets Docent's small files recorded in its
    config when it is opened, and its points are all there."""
    import json

    import qdrant_edge as qe

    path = tmp_path / "docent"
    config = qe.EdgeConfig(vectors={}, sparse_vectors={"bm25": qe.EdgeSparseVectorParams()})
    old = qe.EdgeShard.create(str(path), config)
    old.update(
        qe.UpdateOperation.upsert_points(
            [qe.Point(n, {"bm25": qe.SparseVector([n], [1.0])}, {"n": n}) for n in range(5)]
        )
    )
    old.close()
    assert "wal_options" not in json.loads((path / "edge_config.json").read_text())
    store = EdgeStore(str(path))
    assert await store.total() == 5
    await store.aclose()
    assert json.loads((path / "edge_config.json").read_text())["wal_options"] == WAL_OPTIONS
    new = EdgeStore(str(tmp_path / "new"))
    await new.total()
    await new.aclose()
    files = {p.name: p.stat().st_size for p in (tmp_path / "new" / "wal").iterdir()}
    assert files["open-1"] == WAL_SEGMENT_BYTES, files


async def test_dead_points_add_up_across_processes_to_a_vacuum(tmp_path: Path) -> None:
    """Each run (a CLI `docent ingest` in a process of its own; here a store opened, used and
    closed, which is all a process keeps) leaves fewer dead points than a vacuum waits for; the
    runs together reach it, and the count starts again after it."""
    path = str(tmp_path / "shard")

    async def run(documents: list[DocumentIn]) -> tuple[int, int]:
        store = EdgeStore(path, optimize_after=60)  # 60 dead points at the most
        try:
            ingestor = Ingestor(store, None, chunk_tokens=64, overlap_tokens=8, model=None)
            result = await ingestor.ingest(documents)
            return result.chunks, store.optimizations
        finally:
            await store.aclose()

    await run([document(n) for n in range(10)])
    counted, runs = [], []
    for revision in range(1, 5):  # one document changed per run: its old chunks go dead
        chunks, optimized = await run([document(0, revision)])
        runs.append(optimized)
        counted.append(int(dead_path(path).read_text()))
    per_run = chunks
    assert 20 <= per_run < 30, per_run  # so the third run reaches 60, not the second
    assert runs == [0, 0, 1, 0], (runs, counted)
    assert counted == [per_run, 2 * per_run, 0, per_run], counted


async def until(check: Callable[[], bool], seconds: float) -> bool:
    """Whether `check` holds within `seconds` (asked every 50 ms)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_a_due_vacuum_waits_for_the_streams_to_end(tmp_path: Path) -> None:
    """A vacuum pauses the loop (Edge holds the GIL): due while answers stream, it waits for the
    last one to end, then runs once; the writes meanwhile go on."""
    streaming = [True]
    store = EdgeStore(str(tmp_path / "shard"), optimize_after=60, quiet=lambda: not streaming[0])
    ingestor = Ingestor(store, None, chunk_tokens=64, overlap_tokens=8, model=None)
    try:
        await ingestor.ingest([document(n) for n in range(4)])
        for revision in range(1, 4):  # 3 x 21 dead points: due at the third
            await ingestor.ingest([document(0, revision)])
        await ingestor.ingest([document(1, 1)])  # a write while the vacuum waits
        await asyncio.sleep(0.6)
        assert store.optimizations == 0
        live = await store.total()
        streaming[0] = False
        assert await until(lambda: store.optimizations == 1, 5)
        assert int(dead_path(store.path).read_text()) == 0
        assert await store.total() == live
    finally:
        await store.aclose()


async def test_a_waiting_vacuum_runs_at_its_deadline_or_after_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers that never stop streaming hold a vacuum back VACUUM_WAIT_S at most; a store closed
    while one waits keeps its count, and the next write after it opens again vacuums."""
    from docent import edge

    monkeypatch.setattr(edge, "VACUUM_WAIT_S", 0.5)
    path = str(tmp_path / "shard")
    store = EdgeStore(path, optimize_after=60, quiet=lambda: False)
    ingestor = Ingestor(store, None, chunk_tokens=64, overlap_tokens=8, model=None)
    await ingestor.ingest([document(n) for n in range(4)])
    for revision in range(1, 4):
        await ingestor.ingest([document(0, revision)])
    assert store.optimizations == 0
    assert await until(lambda: store.optimizations == 1, 5)  # the deadline, not quiet

    monkeypatch.setattr(edge, "VACUUM_WAIT_S", 60.0)
    for revision in range(4, 7):
        await ingestor.ingest([document(0, revision)])
    await store.aclose()  # with a vacuum waiting
    assert store.optimizations == 1 and int(dead_path(path).read_text()) >= 60

    reopened = EdgeStore(path, optimize_after=60)  # the CLI: nothing streams
    try:
        await Ingestor(reopened, None, chunk_tokens=64, overlap_tokens=8, model=None).ingest(
            [document(1, 1)]
        )
        assert reopened.optimizations == 1
    finally:
        await reopened.aclose()


def test_the_server_vacuums_when_its_last_stream_ends(tmp_path: Path) -> None:
    """Through `docent serve`'s app: a re-ingest that makes a vacuum due while an answer streams
    returns without it; the vacuum runs once that stream has ended."""
    import threading
    import time

    from tests.conftest import running_docent

    with running_docent(tmp_path, qdrant_optimize_deletes=1, extractive_pace_ms=60) as docent:
        store = docent.services.store
        assert isinstance(store, EdgeStore)
        docent.ingest([{"id": f"note-{n}.md", "text": document(n).text} for n in range(3)])
        opened, ended = threading.Event(), threading.Event()

        def stream() -> None:
            with (
                docent.client() as client,
                client.stream(
                    "POST", "/chat", json={"question": "How many notches does dial 1 turn?"}
                ) as response,
            ):
                for _ in response.iter_bytes():
                    opened.set()
            ended.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert opened.wait(10)
        docent.ingest([{"id": "note-0.md", "text": document(0, 1).text}])  # its old chunks dead
        assert not ended.is_set(), "the answer ended before the re-ingest: pace it slower"
        assert store.optimizations == 0 and int(dead_path(store.path).read_text()) > 0
        reader.join(30)
        deadline = time.monotonic() + 5
        while store.optimizations == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.optimizations == 1
