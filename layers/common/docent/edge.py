"""Qdrant Edge: the embedded default vector store, in-process and on disk at QDRANT_PATH.

Edge is synchronous; each call runs in a worker thread so the event loop never blocks. Writes
are serialised by one lock (Edge has a single writer) and flushed before they return. The
shard's folder is locked by the process that opened it: a second process gets a clear error.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from docent.config import Settings
from docent.errors import ConfigurationError, Unavailable
from docent.vectors import (
    DENSE,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    SPARSE,
    ChunkPoint,
    Hit,
    Query,
    SearchFilter,
)

if TYPE_CHECKING:
    import qdrant_edge as qe

T = TypeVar("T")
# Candidates each arm of a hybrid query contributes before fusion.
PREFETCH_FACTOR = 4
RRF_K = 60


class EdgeStore:
    """`VectorStore` on a Qdrant Edge shard."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._shard: qe.EdgeShard | None = None
        self._dense_size: int | None = None
        self._open_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeStore:
        return cls(os.path.join(settings.qdrant_path, settings.qdrant_collection))

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    def _open(self) -> qe.EdgeShard:
        import qdrant_edge as qe

        config = qe.EdgeConfig(
            vectors={},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        try:
            if (Path(self.path) / "edge_config.json").exists():
                shard = qe.EdgeShard.load(self.path)
            else:
                Path(self.path).mkdir(parents=True, exist_ok=True)
                shard = qe.EdgeShard.create(self.path, config)
        except Exception as exc:
            if "WouldBlock" in str(exc):
                raise Unavailable(
                    f"The vector store at {self.path} is held by another process "
                    "(a running `docent serve`?): stop it or point DOCENT_URL at it."
                ) from exc
            raise
        existing = shard.info()
        for name in KEYWORD_FIELDS:
            if name not in existing.payload_schema:
                shard.update(
                    qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword)
                )
        for name in INTEGER_FIELDS:
            if name not in existing.payload_schema:
                shard.update(
                    qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Integer)
                )
        return shard

    async def _get(self) -> qe.EdgeShard:
        if self._shard is None:
            async with self._open_lock:
                if self._shard is None:
                    self._shard = await self._run(self._open)
                    self._dense_size = shard_dense_size(self.path)
        return self._shard

    async def ensure(self, dense_size: int | None) -> None:
        shard = await self._get()
        if dense_size is None or self._dense_size == dense_size:
            return
        import qdrant_edge as qe

        def add_dense() -> None:
            current = shard_dense_size(self.path)
            if current is None:
                shard.update(
                    qe.UpdateOperation.create_dense_vector(DENSE, dense_size, qe.Distance.Cosine)
                )
            elif current != dense_size:
                raise ConfigurationError(
                    f"The collection at {self.path} holds {current}-dimensional vectors but "
                    f"the embedding model gives {dense_size}: set EMBEDDING_DIMENSIONS to match "
                    "or point QDRANT_COLLECTION at a new collection and re-ingest."
                )
            shard.flush()

        async with self._write_lock:
            await self._run(add_dense)
        self._dense_size = dense_size

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        import qdrant_edge as qe

        shard = await self._get()
        built = [qe.Point(p.id, _vectors(qe, p), p.payload) for p in points]

        def write() -> None:
            shard.update(qe.UpdateOperation.upsert_points(built))
            shard.flush()

        async with self._write_lock:
            await self._run(write)

    async def retrieve(self, ids: Sequence[str]) -> list[Hit]:
        shard = await self._get()
        records = await self._run(lambda: shard.retrieve(list(ids), True, False))
        return [Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records]

    async def count(self, document_id: str, *, other_than_hash: str | None = None) -> int:
        import qdrant_edge as qe

        shard = await self._get()
        flt = _document_filter(qe, document_id, other_than_hash)
        return await self._run(lambda: shard.count(qe.CountRequest(exact=True, filter=flt)))

    async def delete(self, document_id: str, *, other_than_hash: str | None = None) -> int:
        import qdrant_edge as qe

        shard = await self._get()
        flt = _document_filter(qe, document_id, other_than_hash)

        def remove() -> int:
            n = shard.count(qe.CountRequest(exact=True, filter=flt))
            if n:
                shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
                shard.flush()
            return n

        async with self._write_lock:
            return await self._run(remove)

    async def search(self, query: Query) -> list[Hit]:
        shard = await self._get()
        points = await self._run(shard.query, self.request(query))
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]

    def request(self, query: Query) -> qe.QueryRequest:
        """The engine's request for `query`: BM25 alone, or BM25 and dense fused by RRF."""
        import qdrant_edge as qe

        flt = _search_filter(qe, query.filter)
        sparse = qe.SparseVector(query.sparse.indices, query.sparse.values)
        if query.dense is None or self._dense_size is None:
            return qe.QueryRequest(
                limit=query.limit,
                query=qe.Query.Nearest(sparse, using=SPARSE),
                filter=flt,
                with_payload=True,
            )
        depth = query.limit * PREFETCH_FACTOR
        return qe.QueryRequest(
            limit=query.limit,
            prefetches=[
                qe.Prefetch(depth, query=qe.Query.Nearest(sparse, using=SPARSE), filter=flt),
                qe.Prefetch(depth, query=qe.Query.Nearest(query.dense, using=DENSE), filter=flt),
            ],
            query=qe.Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # stub omits nested classes
            filter=flt,
            with_payload=True,
        )

    async def documents(self, limit: int, offset: str | None) -> tuple[list[Hit], str | None]:
        import qdrant_edge as qe

        shard = await self._get()
        request = qe.ScrollRequest(
            offset=offset,
            limit=limit,
            filter=qe.Filter(must=[qe.FieldCondition("position", match=qe.MatchValue(0))]),
            with_payload=qe.PayloadSelector.Exclude(["text"]),
        )
        records, next_offset = await self._run(shard.scroll, request)
        hits = [Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records]
        return hits, (str(next_offset) if next_offset is not None else None)

    async def total(self) -> int:
        import qdrant_edge as qe

        shard = await self._get()
        return await self._run(lambda: shard.count(qe.CountRequest(exact=True)))

    async def ping(self) -> None:
        await self.total()

    async def close(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            async with self._write_lock:
                await self._run(shard.close)


def shard_dense_size(path: str) -> int | None:
    """The dense vector size recorded in the shard's config, if it has one."""
    import json

    config_file = Path(path) / "edge_config.json"
    if not config_file.exists():
        return None
    vectors = json.loads(config_file.read_text()).get("vectors") or {}
    params = vectors.get(DENSE)
    return int(params["size"]) if params else None


def _vectors(qe: Any, point: ChunkPoint) -> dict[str, Any]:
    vectors: dict[str, Any] = {SPARSE: qe.SparseVector(point.sparse.indices, point.sparse.values)}
    if point.dense is not None:
        vectors[DENSE] = point.dense
    return vectors


def _document_filter(qe: Any, document_id: str, other_than_hash: str | None) -> Any:
    must = [qe.FieldCondition("document_id", match=qe.MatchValue(document_id))]
    must_not = (
        [qe.FieldCondition("content_hash", match=qe.MatchValue(other_than_hash))]
        if other_than_hash is not None
        else None
    )
    return qe.Filter(must=must, must_not=must_not)


def _search_filter(qe: Any, flt: SearchFilter) -> Any:
    must = []
    if flt.document_id is not None:
        must.append(qe.FieldCondition("document_id", match=qe.MatchValue(flt.document_id)))
    if flt.tags:
        must.append(qe.FieldCondition("tags", match=qe.MatchAny(list(flt.tags))))
    return qe.Filter(must=must) if must else None
