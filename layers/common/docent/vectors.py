"""The vector store: one small protocol and the points it holds; `docent.services` picks one.

Every chunk is one point: a BM25 sparse vector (`bm25`, IDF modifier) and, when embeddings are
configured, a dense vector (`dense`) beside it, so retrieval can fuse both in the engine.
Point ids are deterministic, so a retry overwrites, never duplicates: a document's first chunk
(its head: the commit marker of its current version) is `uuid5(document id, 0)`, every other
chunk `uuid5(document id, content hash, position)`, so a new version is written beside the old.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Protocol, cast

from docent.values import ChunkPayload

SPARSE = "bm25"
DENSE = "dense"
# Hybrid search, as every backend runs it (`fuse`): candidates each arm (BM25, dense) contributes
# before fusion, per result asked for, and BM25's share of the fused score.
PREFETCH_FACTOR = 4
# A convex combination of each arm's normalised scores (BM25 over its best, the cosine min-max
# over the arm's candidates), not reciprocal rank fusion: RRF keeps only ranks, so a close second
# and a distant second count alike. On `make eval`'s eight sets (2026-11-28, the same candidates
# fused both ways, with retrieval's page evidence) recall@1 went from 0.854 / 0.711 / 0.800 /
# 0.750 (tuning / held out / fresh / third pair; RRF, k = 60) to 0.888 / 0.763 / 0.800 / 0.900,
# recall@5 0.97 to 1.00 either way. Shares 0.2 to 0.4 all gain (recall@1, the mean of the four
# pools: 0.81 to 0.84 against 0.78); Qdrant's own distribution-based fusion (DBSF, equal shares)
# 0.79 to 0.81.
SPARSE_SHARE = 0.3
# Payload fields that get an index: filters and the document listing use them.
KEYWORD_FIELDS = ("document_id", "tags", "content_hash")
INTEGER_FIELDS = ("position",)
_NAMESPACE = uuid.UUID("8b1f0c4e-5d7a-4c1e-9a51-6f0e3d2b7c90")


@lru_cache(maxsize=4096)
def point_id(document_id: str, position: int) -> str:
    """The deterministic id of a document's chunk at `position` (cached: retrieval looks up the
    heads of a query's documents, about 10 uuid5 hashes a query)."""
    return str(uuid.uuid5(_NAMESPACE, f"{document_id}\x1f{position}"))


def chunk_point_id(document_id: str, content_hash: str, position: int) -> str:
    """The id of a chunk of one version of a document: the head's id, or one of that version."""
    if position == 0:
        return point_id(document_id, 0)
    return str(uuid.uuid5(_NAMESPACE, f"{document_id}\x1f{content_hash}\x1f{position}"))


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class ChunkPoint:
    id: str
    sparse: SparseVector
    payload: dict[str, Any]  # a `ChunkPayload`, as engines take it
    dense: list[float] | None = None

    @property
    def chunk(self) -> ChunkPayload:
        return cast(ChunkPayload, self.payload)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]  # as the engine returns it; `chunk` reads it typed
    # A fused hit's own BM25 score (0 when only the dense arm found it); None when `score` is
    # the BM25 score itself (a search without embeddings).
    lexical: float | None = None

    @property
    def chunk(self) -> ChunkPayload:
        """The payload as the chunk Docent wrote (`ingest`); read keys with `.get`."""
        return cast(ChunkPayload, self.payload)


@dataclass(frozen=True)
class SearchFilter:
    document_id: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Query:
    """A search: the question's sparse vector, its dense vector when embeddings exist."""

    sparse: SparseVector
    dense: list[float] | None = None
    filter: SearchFilter = field(default_factory=SearchFilter)
    limit: int = 10
    # (document id, content hash) versions to leave out: a document's chunks of a version its
    # head no longer names (`search_current`'s second look).
    stale: tuple[tuple[str, str], ...] = ()


# The payload fields `VectorStore.heads` reads.
HEAD_FIELDS = ["document_id", "content_hash"]


def head_hashes(payloads: Sequence[dict[str, Any] | None]) -> dict[str, str]:
    """{document id: content hash} from heads' payloads (those with both fields)."""
    out = {}
    for payload in payloads:
        if payload and "document_id" in payload and "content_hash" in payload:
            out[str(payload["document_id"])] = str(payload["content_hash"])
    return out


def heads_among(hits: Sequence[Hit]) -> tuple[dict[str, str], list[str]]:
    """The head hashes the hits hold themselves (a hit at position 0 is its document's head), and
    the documents whose heads are not among them."""
    known = {
        str(h.payload.get("document_id")): str(h.payload.get("content_hash"))
        for h in hits
        if h.payload.get("position") == 0
    }
    return known, sorted({str(h.payload.get("document_id")) for h in hits} - known.keys())


# How many searches `search_current` makes at most: the query, then the query again without the
# versions the last one found stale.
STALE_ROUNDS = 3


def stale_versions(hits: Sequence[Hit], current: Sequence[Hit]) -> tuple[tuple[str, str], ...]:
    """The (document id, content hash) versions of the hits `current_hits` dropped."""
    kept = {h.id for h in current}
    found = {
        (str(h.payload.get("document_id")), str(h.payload.get("content_hash")))
        for h in hits
        if h.id not in kept
    }
    return tuple(sorted(found))


def by_document(stale: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Stale versions as {document id: its stale content hashes}, for a search's filter."""
    out: dict[str, list[str]] = {}
    for document_id, content_hash in stale:
        out.setdefault(document_id, []).append(content_hash)
    return out


def search_again(query: Query, hits: Sequence[Hit], current: Sequence[Hit]) -> Query | None:
    """The query again without the stale versions among `hits`, when they took places current
    chunks may fill (a crash between a re-ingest's flip and its clean-up leaves a document's old
    chunks, which can outrank all its current ones); None when `current` is the answer."""
    if len(current) == len(hits) or len(hits) < query.limit:
        return None
    return replace(query, stale=query.stale + stale_versions(hits, current))


def current_hits(hits: Sequence[Hit], heads: dict[str, str]) -> list[Hit]:
    """The hits of their document's current version (the one its head names): chunks of another
    version, left beside it while a re-ingest switches versions or by a crash then, are dropped."""
    return [
        h
        for h in hits
        if str(h.payload.get("content_hash")) == heads.get(str(h.payload.get("document_id")))
    ]


def fuse(
    sparse: Sequence[tuple[str, float]], dense: Sequence[tuple[str, float]], limit: int
) -> list[tuple[str, float]]:
    """The best `limit` of both arms' (id, score) candidates by SPARSE_SHARE of the BM25 score
    over the arm's best plus the rest of the cosine min-max scaled over the arm's candidates; a
    point one arm did not return gets nothing from it. Ties go to the id that sorts first."""
    fused: dict[str, float] = {}
    if sparse:
        best = max(score for _, score in sparse) or 1.0
        for point, score in sparse:
            fused[point] = SPARSE_SHARE * max(score, 0.0) / best
    if dense:
        high = max(score for _, score in dense)
        low = min(score for _, score in dense)
        span = high - low
        for point, score in dense:
            scaled = (score - low) / span if span > 0 else 1.0
            fused[point] = fused.get(point, 0.0) + (1.0 - SPARSE_SHARE) * scaled
    ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:limit]


def in_order(
    payloads: Mapping[str, dict[str, Any]],
    ranked: Sequence[tuple[str, float]],
    sparse: Sequence[tuple[str, float]],
) -> list[Hit]:
    """The fused points as hits, in their fused order, with their fused scores and the BM25
    arm's own (`payloads`: each point's payload by id, as the engine returned them; a point gone
    since is left out)."""
    lexical = dict(sparse)
    return [
        Hit(point, score, payloads[point], lexical.get(point, 0.0))
        for point, score in ranked
        if point in payloads
    ]


def points_bytes(points: Sequence[ChunkPoint]) -> int:
    """What a batch of points weighs, roughly as an engine stores it (text, vectors, metadata)."""
    total = 0
    for p in points:
        text = p.payload.get("text")
        total += 512 + (len(str(text).encode()) if text else 0)
        total += 8 * len(p.sparse.indices) + 4 * len(p.dense or ())
    return total


class VectorStore(Protocol):
    """What Docent needs from a vector engine; Edge (embedded) and Qdrant (server) implement it."""

    async def ensure(self, dense_size: int | None) -> None:
        """Create the collection, its vectors and payload indexes if absent (idempotent)."""
        ...

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Write points and wait until they are durable and searchable."""
        ...

    def batch(self) -> AbstractAsyncContextManager[None]:
        """Writes made inside are made durable together when it ends (Edge flushes its segments
        once, not after each write; a server's writes each already are): an ingest's writes."""
        ...

    async def retrieve(self, ids: Sequence[str]) -> list[Hit]:
        """Points by id with their payloads (missing ids are left out)."""
        ...

    async def heads(self, document_ids: Sequence[str]) -> dict[str, str]:
        """Each document's current version: the content hash its head holds (absent ones left
        out). Only those two payload fields are read (a query's heads: see `search_current`)."""
        ...

    async def count(self, document_id: str, *, other_than_hash: str | None = None) -> int:
        """Points of a document, optionally only those whose content hash differs."""
        ...

    async def versions(self, heads: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
        """For each (document id, content hash): the document's points of that version and of
        any other, in one call for the batch (a re-ingest asks this of every unchanged one)."""
        ...

    async def delete(self, document_id: str, *, other_than_hash: str | None = None) -> int:
        """Delete a document's points (or only the stale ones); returns how many went."""
        ...

    async def search(self, query: Query) -> list[Hit]:
        """BM25, or BM25 and dense fused by score (`fuse`), best first."""
        ...

    async def search_current(self, query: Query) -> list[Hit]:
        """`search`, keeping only the hits of each document's current version (`current_hits`):
        what retrieval reads. Edge runs the search and the heads' lookup in one worker thread."""
        ...

    async def documents(self, limit: int, offset: str | None) -> tuple[list[Hit], str | None]:
        """Each document's first chunk (it carries the document's metadata), paged."""
        ...

    async def total(self) -> int:
        """All points in the collection."""
        ...

    async def ping(self) -> None:
        """Raise if the engine cannot answer."""
        ...

    async def reserve(self, write_bytes: int) -> None:
        """Raise `InsufficientStorage` (507) if a write of about this size cannot fit now."""
        ...

    async def snapshot(self, destination: str) -> dict[str, Any]:
        """Write a consistent snapshot of the collection to the file `destination`."""
        ...

    async def restore(self, source: str) -> dict[str, Any]:
        """Replace the collection with the snapshot in the file `source`."""
        ...

    async def aclose(self) -> None:
        """Release the engine's connection (and the embedded store's lock)."""
        ...
