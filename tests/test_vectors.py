"""One retrieval suite, run on the embedded Edge store and on a Qdrant server's API.

No Qdrant server binary installs here: qdrant-client's local mode implements the server API
in-process and stands in for it. Both stores must also rank alike (congruence).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from docent import sparse
from docent.edge import EdgeStore
from docent.qdrant import QdrantStore
from docent.vectors import (
    SPARSE_SHARE,
    ChunkPoint,
    Hit,
    Query,
    SearchFilter,
    VectorStore,
    chunk_point_id,
    fuse,
    point_id,
)

DIM = 128
TEXTS = {
    "install": [
        "Install the server with pip install acme-server on Linux or macOS.",
        "Upgrade an existing installation with pip install --upgrade acme-server.",
        "The server listens on port 8080 unless PORT says otherwise.",
    ],
    "limits": [
        "A sliding window limits every token to sixty requests per minute.",
        "Requests over the limit receive status 429 and a Retry-After header.",
    ],
    "billing": [
        "Invoices are emailed on the first day of each month as PDF files.",
        "Refunds for card payments are processed within ten business days.",
        "Bank transfers must quote the invoice number as the payment reference.",
    ],
    "security": [
        "API keys are compared in constant time and never logged.",
        "Rotate a leaked key by removing it from the configuration and restarting.",
    ],
}
TAGS = {"install": ["setup"], "limits": ["api"], "billing": ["account"], "security": ["api"]}


def embed(text: str) -> list[float]:
    """A deterministic character-trigram vector: similar texts point the same way.

    Trigrams make almost every pair of texts a little similar, so the dense ranking has no
    zero-similarity ties, which either engine may order as it likes.
    """
    vector = [0.0] * DIM
    padded = f"  {text.lower()}  "
    for i in range(len(padded) - 2):
        digest = int(hashlib.sha256(padded[i : i + 3].encode()).hexdigest(), 16)
        vector[digest % DIM] += 1.0 + (digest >> 32) % 997 / 997
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def points(document_id: str, texts: list[str], digest: str = "h1") -> list[ChunkPoint]:
    return [
        ChunkPoint(
            point_id(document_id, i),
            sparse.encode_document(text),
            {
                "document_id": document_id,
                "position": i,
                "section": 0,
                "start": 0,
                "text": text,
                "tags": TAGS[document_id],
                "content_hash": digest,
                "chunk_count": len(texts),
            },
            embed(text),
        )
        for i, text in enumerate(texts)
    ]


@pytest.fixture(params=["edge", "qdrant-local", "qdrant-standin"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    backend: VectorStore
    if request.param == "edge":
        backend = EdgeStore(str(tmp_path / "edge"))
    elif request.param == "qdrant-local":
        backend = QdrantStore("docent-test", location=":memory:")
    else:  # the REST API over HTTP (docent.qdrantstandin), as a Lambda function reaches Qdrant
        url = request.getfixturevalue("qdrant_url")
        backend = QdrantStore(tmp_path.name, url=url)
    await backend.ensure(DIM)
    for document_id, texts in TEXTS.items():
        await backend.upsert(points(document_id, texts))
    yield backend
    await backend.aclose()


def query(text: str, *, dense: bool = False, **flt: object) -> Query:
    return Query(
        sparse=sparse.encode_query(text),
        dense=embed(text) if dense else None,
        filter=SearchFilter(**flt),  # type: ignore[arg-type]
        limit=5,
    )


async def test_bm25_finds_the_passage_by_its_terms(store: VectorStore) -> None:
    hits = await store.search(query("what status do requests over the limit get?"))
    assert hits[0].payload["text"].startswith("Requests over the limit")
    assert all(h.score > 0 for h in hits)


async def test_filters_by_document_and_tags(store: VectorStore) -> None:
    by_doc = await store.search(query("the server payment key", document_id="billing"))
    by_tag = await store.search(query("the server payment key limit", tags=("api",)))
    assert {h.payload["document_id"] for h in by_doc} == {"billing"}
    assert {h.payload["document_id"] for h in by_tag} <= {"limits", "security"}
    assert by_tag


async def test_hybrid_fuses_dense_and_sparse(store: VectorStore) -> None:
    hits = await store.search(query("install acme-server with pip", dense=True))
    assert hits[0].payload["document_id"] == "install"
    assert len(hits) == 5  # fusion fills the limit from both arms


async def test_counts_stale_deletion_and_listing(store: VectorStore) -> None:
    assert await store.total() == 10
    assert await store.count("billing") == 3
    await store.upsert(points("billing", TEXTS["billing"][:1], digest="h2"))
    assert await store.count("billing", other_than_hash="h2") == 2
    assert await store.delete("billing", other_than_hash="h2") == 2
    assert await store.count("billing") == 1
    heads, _ = await store.documents(100, None)
    assert sorted(h.payload["document_id"] for h in heads) == sorted(TEXTS)
    assert all("text" not in h.payload for h in heads)
    assert await store.delete("billing") == 1
    assert await store.retrieve([point_id("billing", 0)]) == []


async def test_heads_and_version_counts(store: VectorStore) -> None:
    # billing's head flips to h2 while its two other chunks are still h1 (a re-ingest between
    # the flip and the deletion of the old version, or a crash there).
    await store.upsert(points("billing", TEXTS["billing"][:1], digest="h2"))
    heads = await store.heads(["billing", "install", "absent"])
    assert heads == {"billing": "h2", "install": "h1"}
    assert await store.heads([]) == {}
    counts = await store.versions([("billing", "h2"), ("billing", "h1"), ("install", "h1")])
    assert counts == [(1, 2), (2, 1), (len(TEXTS["install"]), 0)]
    assert await store.versions([("absent", "h1")]) == [(0, 0)]
    assert await store.versions([]) == []


async def test_search_current_keeps_each_documents_current_version(store: VectorStore) -> None:
    refunds = query("refunds for cards, processed", document_id="billing")  # chunk 1's
    invoices = query("invoices emailed as PDF, invoice number", document_id="billing")  # 0 and 2
    before = await store.search_current(refunds)
    assert [h.id for h in before] == [h.id for h in await store.search(refunds)]
    assert [h.payload["position"] for h in before] == [1]  # its head is not among the hits
    # The head flips to h2 beside the two h1 chunks (a re-ingest before it deletes them, or a
    # crash then): they are no longer the document's, whether its head is among the hits or not.
    await store.upsert(points("billing", TEXTS["billing"][:1], digest="h2"))
    assert [h.payload["position"] for h in await store.search(refunds)] == [1]
    assert await store.search_current(refunds) == []
    assert {h.payload["position"] for h in await store.search(invoices)} == {0, 2}
    current = await store.search_current(invoices)
    assert [(h.payload["position"], h.payload["content_hash"]) for h in current] == [(0, "h2")]


@pytest.mark.parametrize("dense", [False, True])
async def test_stale_chunks_that_outrank_every_current_one_do_not_hide_them(
    store: VectorStore, dense: bool
) -> None:
    # GIVEN a document whose head names a short new version (h2), beside the six chunks of its
    # old version (h1), each of which matches the question better: a re-ingest killed after its
    # flip, before it deleted the old chunks
    old = [f"Refunds for card payments, part {i}: refunds refunds card payments." for i in range(6)]
    stale = points("billing", old, "h1")[1:]  # its head is the new version's now
    await store.upsert(
        [ChunkPoint(chunk_point_id("billing", "h1", i), p.sparse, p.payload, p.dense)
         for i, p in enumerate(stale, start=1)]
    )  # fmt: skip
    await store.upsert(points("billing", ["Refunds take ten days.", "Card refunds, then."], "h2"))
    asked = query("refunds for card payments", dense=dense, document_id="billing")
    asked = Query(asked.sparse, asked.dense, asked.filter, limit=3)
    found = await store.search(asked)
    assert {h.payload["content_hash"] for h in found} == {"h1"}  # all three places taken
    # WHEN the current chunks are searched for
    current = await store.search_current(asked)
    # THEN the old version's are left out and the current version's found behind them
    assert sorted(h.payload["position"] for h in current) == [0, 1]
    assert {h.payload["content_hash"] for h in current} == {"h2"}


async def test_listing_pages(store: VectorStore) -> None:
    first, offset = await store.documents(2, None)
    rest, end = await store.documents(10, offset)
    assert len(first) == 2 and offset is not None
    assert {h.payload["document_id"] for h in first + rest} == set(TEXTS)
    assert end is None


@pytest.mark.parametrize(
    "text",
    [
        "requests over the limit",
        "pip install upgrade",
        "invoice payment reference",
        "rotate leaked key",
        "port 8080",
    ],
)
async def test_edge_and_server_api_rank_alike(tmp_path: Path, text: str) -> None:
    edge = EdgeStore(str(tmp_path / "edge"))
    local = QdrantStore("congruence", location=":memory:")
    rankings = []
    for backend in (edge, local):
        await backend.ensure(DIM)
        for document_id, texts in TEXTS.items():
            await backend.upsert(points(document_id, texts))
        bm25 = await backend.search(query(text))
        hybrid = await backend.search(query(text, dense=True))
        rankings.append(([(h.id, round(h.score, 3)) for h in bm25], fused(hybrid)))
        await backend.aclose()
    (edge_bm25, edge_hybrid), (local_bm25, local_hybrid) = rankings
    assert edge_bm25 == local_bm25
    assert edge_hybrid == local_hybrid


def fused(hits: list[Hit]) -> list[tuple[str, float]]:
    """Fused hits as (id, score): both engines' arms go through `vectors.fuse`, whose ties go to
    the id that sorts first, so the order is the same to the id."""
    return [(h.id, round(h.score, 4)) for h in hits]


def test_fusion_weighs_scores_not_ranks() -> None:
    # GIVEN "a" first by BM25 and "b" a close second, while the dense arm puts "c" far ahead and
    # "a" and "b" nearly level at its bottom
    bm25 = [("a", 10.0), ("b", 9.5), ("c", 1.0)]
    dense = [("c", 0.9), ("a", 0.5), ("b", 0.49)]
    # WHEN they are fused
    ranked = fuse(bm25, dense, 3)
    # THEN "c" leads: reciprocal rank fusion (k = 60) would put "a" first (1/61 + 1/62 against
    # c's 1/63 + 1/61), a rank's worth of difference whatever the scores' gaps
    assert [point for point, _ in ranked] == ["c", "a", "b"]
    share = SPARSE_SHARE
    expected = [share * 0.1 + (1 - share), share + (1 - share) * 0.01 / 0.41, share * 0.95]
    assert [score for _, score in ranked] == pytest.approx(expected)
    # AND one arm alone ranks by itself, ties to the id that sorts first, the limit holds
    alone = fuse([], dense, 2)
    assert alone == [
        ("c", pytest.approx(1 - share)),
        ("a", pytest.approx((1 - share) * 0.01 / 0.41)),
    ]
    assert fuse([("y", 2.0), ("x", 2.0)], [], 5) == [("x", share), ("y", share)]
    assert fuse([], [], 5) == []


async def test_hybrid_search_ranks_by_the_fused_scores(store: VectorStore) -> None:
    """Every backend (Edge, the server API in-process and over HTTP) returns `fuse` of its two
    arms: BM25's scores, and the cosine of the question's vector with each chunk's."""
    text = "refunds for card payments and invoices"
    bm25 = await store.search(Query(sparse.encode_query(text), None, SearchFilter(), 20))
    asked = embed(text)
    cosine = {
        point_id(d, i): sum(a * b for a, b in zip(asked, embed(t), strict=True))
        for d, texts in TEXTS.items()
        for i, t in enumerate(texts)
    }
    dense = sorted(cosine.items(), key=lambda item: -item[1])
    expected = fuse([(h.id, h.score) for h in bm25], dense, 5)
    hits = await store.search(query(text, dense=True))
    assert [h.id for h in hits] == [point for point, _ in expected]
    assert [h.score for h in hits] == pytest.approx([score for _, score in expected], abs=1e-4)
    assert hits[0].payload["text"].startswith("Refunds for card payments")
    assert all(h.payload["text"] for h in hits)  # the winners come with their payloads
    # AND each fused hit carries BM25's own score for it (0 for a point only the dense arm
    # found), which `answered` weighs whatever the fusion made of it
    own = {h.id: h.score for h in bm25}
    assert [h.lexical for h in hits] == pytest.approx([own.get(h.id, 0.0) for h in hits])
    assert hits[0].lexical is not None and hits[0].lexical > 0
    assert all(h.lexical is None for h in bm25)  # BM25 alone: its score is the BM25 score


# Run in a fresh interpreter, so that no other test's Edge threads (still exiting) are counted.
_SEARCH_AND_COUNT = """
import asyncio, json, sys
from pathlib import Path
from docent import sparse
from docent.edge import EdgeStore
from docent.vectors import Query, SearchFilter

async def main():
    store = EdgeStore(sys.argv[1])
    query = Query(sparse=sparse.encode_query(sys.argv[2]), dense=None, filter=SearchFilter(),
                  limit=5)
    hits = await store.search_current(query)
    pool = sum((task / "comm").read_text().startswith("edge-search")
               for task in Path("/proc/self/task").iterdir())
    await store.aclose()
    print(json.dumps({"pool": pool, "top": hits[0].payload["text"] if hits else None}))

asyncio.run(main())
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads threads from /proc")
async def test_edge_searches_with_one_pool_thread(tmp_path: Path) -> None:
    """Edge's default pool (a thread per CPU and more) woke every thread on each query, for no
    gain on a small machine: Docent records one in the shard's config, a shard made before
    included, and its searches still find what they should."""
    import json
    import os
    import subprocess
    import sys

    from docent.edge import SEARCH_THREADS

    made = EdgeStore(str(tmp_path / "edge"))
    await made.ensure(DIM)
    await made.upsert(points("install", TEXTS["install"]))
    await made.aclose()
    config_file = tmp_path / "edge" / "edge_config.json"
    config = json.loads(config_file.read_text())
    del config["max_search_threads"]  # as a shard made before this setting was
    config_file.write_text(json.dumps(config))
    searched = subprocess.run(
        [sys.executable, "-c", _SEARCH_AND_COUNT, str(tmp_path / "edge"),
         "pip install acme-server upgrade"],
        capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    found = json.loads(searched.stdout.strip().splitlines()[-1])
    assert found["top"] == TEXTS["install"][1]
    assert json.loads(config_file.read_text())["max_search_threads"] == SEARCH_THREADS == 1
    assert found["pool"] == SEARCH_THREADS


async def test_edge_looks_each_head_up_once_between_writes(tmp_path: Path) -> None:
    """Edge keeps the head hashes a search looked up until the next write (this process alone
    writes its shard): a second question on the same pages asks the shard for no heads."""
    store = EdgeStore(str(tmp_path / "edge"))
    await store.ensure(DIM)
    await store.upsert(points("billing", TEXTS["billing"]))
    looked_up: list[list[object]] = []

    class Counting:
        def __init__(self, shard: object) -> None:
            self.shard = shard

        def retrieve(self, ids: list[object], *args: object) -> object:
            looked_up.append(ids)
            return self.shard.retrieve(ids, *args)  # type: ignore[attr-defined]

        def __getattr__(self, name: str) -> object:
            return getattr(self.shard, name)

    store._shard = Counting(await store.engine())  # type: ignore[assignment]
    refunds = query("refunds for cards, processed", document_id="billing")  # no head among hits
    first = await store.search_current(refunds)
    second = await store.search_current(refunds)
    assert [h.payload["position"] for h in first] == [1] and second == first
    assert looked_up == [[point_id("billing", 0)]]

    # A write in between: the head is looked up anew, and the new version holds.
    await store.upsert(points("billing", TEXTS["billing"][:1], digest="h2"))
    n = len(looked_up)  # the upsert's own lookups counted
    assert await store.search_current(refunds) == []
    assert looked_up[n:] == [[point_id("billing", 0)]]
    # Searches read no metadata or tags: only what sources are made of.
    assert "tags" not in first[0].payload and first[0].payload["text"]
    await store.aclose()
