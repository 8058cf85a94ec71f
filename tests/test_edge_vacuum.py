"""Dead points: Edge never optimises by itself, so ingest/delete churn grows the shard without end.

The same churn (documents ingested, changed, deleted, five kept live) runs on a shard that
vacuums after QDRANT_OPTIMIZE_DELETES changes and on one that never does. The first stays flat
after its warm-up; the second keeps growing (the fault the soak saw as a slow creep).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docent.edge import EdgeStore, folder_bytes
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
    return sizes


async def test_vacuum_keeps_the_shard_flat_under_churn(tmp_path: Path) -> None:
    vacuumed = EdgeStore(str(tmp_path / "vacuumed"), optimize_after=100)  # ~every other cycle
    never = EdgeStore(str(tmp_path / "never"), optimize_after=0)
    figures = {}
    for name, store in (("vacuumed", vacuumed), ("never", never)):
        await churn(store, range(WARM_UP))
        base = folder_bytes(Path(store.path) / "segments")
        sizes = await churn(store, range(WARM_UP, WARM_UP + CYCLES))
        figures[name] = (base, max(sizes), await store.total(), store.optimizations)
        await store.aclose()
    print(f"\nsegments bytes (after warm-up, peak, live points, optimisations): {figures}")

    base, peak, live, optimizations = figures["vacuumed"]
    assert optimizations > 0
    assert peak <= 1.05 * base
    never_base, never_peak, never_live, _ = figures["never"]
    assert never_live == live  # the same documents are live in both
    assert never_peak > 1.5 * never_base  # without the vacuum the dead points pile up
