"""Ingestion: documents in, chunks with sparse (and dense) vectors out, idempotently.

Each document carries a content hash (its text, metadata and the chunking settings). Re-ingesting
an unchanged document is a no-op: no parsing into the store, no embedding, no write.

A changed document is switched from its old version to its new one atomically, as a reader sees
it, so a crash at any point leaves either version, whole, and is safe to retry:
  0. the disk is checked for room for the whole request (a 507 before anything is written),
  1. the new version's chunks 1..n-1 are written beside the old ones (their ids carry the new
     hash: uuid5(document, hash, position); a retry overwrites them, never duplicates),
  2. chunk 0, the head, is overwritten in one write (its id is uuid5(document, 0)): it holds the
     hash and chunk count, so it is the commit marker that flips the document to its new version,
  3. the chunks of any other version are deleted.
Readers follow the head: the document listing shows heads only, and retrieval drops any chunk
whose hash is not its document's head's (a crash between steps 1 and 3 leaves such chunks).
A document counts as unchanged only when its head has the new hash and that version's chunk
count matches; left-over chunks of another version are then deleted.

Steps 0-3 of every ingest share one gate, which a snapshot closes (`Ingestor.snapshot`): it waits
for the writes in flight and holds new ones back, so it never archives a version half written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

from docent import sparse
from docent.errors import DocumentError
from docent.retrieval import history_headings
from docent.values import ChunkPayload, Usage
from docent.vectors import ChunkPoint, VectorStore, chunk_point_id, point_id, points_bytes

if TYPE_CHECKING:
    from docent.chunking import Chunk
    from docent.embeddings import Embedder

# Bump when parsing or chunking changes what a document turns into: every hash changes with it
# (`tests/test_ingest.py` pins what its fixtures turn into for each version, and fails otherwise).
PIPELINE_VERSION = 4  # 2: a changelog known by its headings (`history`); HTML text as laid out
# 3: a numbered section ("1.2 - Installing") is no version heading; HTML's <ol> comes out
# numbered; an admonition's title opens its paragraph ("**Note:** ..."); 4: an HTML table comes
# out as a GFM pipe table; a chunk that starts or ends inside a code block says so (`code_open`,
# `code_close`)
WRITE_BATCH = 256


@dataclass(frozen=True)
class DocumentIn:
    id: str
    text: str
    title: str | None = None
    url: str | None = None
    format: Literal["markdown", "text", "html"] = "markdown"
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class IngestResult:
    """What an ingest did, counted; a sync's `SyncResult` counts more on top of these."""

    documents: int = 0
    chunks: int = 0
    unchanged: int = 0
    deleted_chunks: int = 0

    def add(self, other: IngestResult) -> None:
        """Add another batch's counts to these (`other` is of this class or of a base of it)."""
        for name in (f.name for f in fields(other)):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IngestCounters:
    """Work done since start: what tests and benchmarks read to prove a no-op is one."""

    points_written: int = 0
    documents_written: int = 0
    documents_unchanged: int = 0


@dataclass(frozen=True)
class _Prepared:
    document: DocumentIn
    content_hash: str
    points: list[ChunkPoint]
    previous_chunks: int


class WriteGate:
    """Writes pass together; closing the gate waits for those in flight and holds new ones back.

    A reader-writer lock, kept this small on purpose: like `asyncio.Lock` it binds to an event loop
    only when it has to wait (aiorwlock's binds on every acquire), so an `Ingestor` made before any
    loop runs, or used from one `asyncio.run` after another, needs no care.
    """

    def __init__(self) -> None:
        self._closing = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writing = 0

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        async with self._closing:  # a closer, waiting or holding, goes first
            self._writing += 1
            self._idle.clear()
        try:
            yield
        finally:
            self._writing -= 1
            if not self._writing:
                self._idle.set()

    @asynccontextmanager
    async def closed(self) -> AsyncIterator[None]:
        async with self._closing:
            await self._idle.wait()
            yield


class Ingestor:
    """Turns documents into points and keeps the store in step with them."""

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder | None,
        *,
        chunk_tokens: int,
        overlap_tokens: int,
        model: str | None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.model = model
        self.counters = IngestCounters()
        self._locks: dict[str, asyncio.Lock] = {}
        self._gate = WriteGate()

    def content_hash(self, doc: DocumentIn) -> str:
        """Everything that decides a document's points, hashed."""
        basis = {
            "v": PIPELINE_VERSION,
            "chunking": [self.chunk_tokens, self.overlap_tokens, self.model],
            "embedding": [self.embedder.model, self.embedder.dimensions] if self.embedder else None,
            "doc": [doc.text, doc.title, doc.url, doc.format, list(doc.tags), doc.metadata],
        }
        raw = json.dumps(basis, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()

    async def ingest(self, documents: Sequence[DocumentIn]) -> IngestResult:
        """Ingest documents; all are parsed before anything is written: a bad one loses nothing."""
        result = IngestResult(documents=len(documents))
        ids = [d.id for d in documents]
        if len(set(ids)) != len(ids):
            raise DocumentError("Each document id may appear only once per request.")
        locks = [self._locks.setdefault(i, asyncio.Lock()) for i in sorted(ids)]
        for lock in locks:
            await lock.acquire()
        try:
            changed = await self._changed(documents, result)
            prepared = await asyncio.to_thread(self._prepare_all, changed)
            await self._embed(prepared)
            await self._write(prepared, result)
        finally:
            for lock in locks:
                lock.release()
        return result

    async def _changed(
        self, documents: Sequence[DocumentIn], result: IngestResult
    ) -> list[tuple[DocumentIn, str, int]]:
        """(document, new hash, chunks its current version has) for each one that needs writing."""
        hashes = [self.content_hash(d) for d in documents]
        found = await self.store.retrieve([point_id(d.id, 0) for d in documents])
        heads = {h.id: h.payload for h in found}
        same = [
            (doc.id, digest)
            for doc, digest in zip(documents, hashes, strict=True)
            if heads.get(point_id(doc.id, 0), {}).get("content_hash") == digest
        ]
        counts = dict(zip([d for d, _ in same], await self.store.versions(same), strict=True))
        changed = []
        for doc, digest in zip(documents, hashes, strict=True):
            head = heads.get(point_id(doc.id, 0))
            if head and doc.id in counts:
                current, stale = counts[doc.id]
                if current == head.get("chunk_count"):
                    if stale:  # left by a crash after the head flipped
                        result.deleted_chunks += await self.store.delete(
                            doc.id, other_than_hash=digest
                        )
                    result.unchanged += 1
                    self.counters.documents_unchanged += 1
                    continue
            changed.append((doc, digest, int(head.get("chunk_count", 0)) if head else 0))
        return changed

    def _prepare_all(self, changed: Sequence[tuple[DocumentIn, str, int]]) -> list[_Prepared]:
        return [self._prepare(doc, digest, current) for doc, digest, current in changed]

    def _prepare(self, doc: DocumentIn, digest: str, current: int) -> _Prepared:
        from docent.chunking import chunk_document
        from docent.parsing import parse
        from docent.tokens import encoding_name

        try:
            parsed = parse(doc.text, doc.format, doc.metadata.get("anchors"))
        except DocumentError as exc:
            raise DocumentError(f"Document {doc.id!r}: {exc.message}") from exc
        chunks = chunk_document(
            parsed,
            max_tokens=self.chunk_tokens,
            overlap_tokens=self.overlap_tokens,
            model=self.model,
        )
        encoding = encoding_name(self.model)  # the one `chunk_document` counted `tokens` in
        title = doc.title or parsed.title
        url = doc.url or _metadata_url(parsed.metadata)
        tags = sorted(set(doc.tags) | set(_metadata_tags(parsed.metadata)))
        history = history_headings(s.headings for s in parsed.sections)
        now = int(time.time())
        points = []
        for chunk in chunks:
            payload: ChunkPayload = {
                "document_id": doc.id,
                "position": chunk.position,
                "section": chunk.section,
                "start": chunk.start,
                "text": chunk.text,
                "title": title,
                "url": url,
                "headings": list(chunk.headings),
                "anchor": chunk.anchor,
                "tags": tags,
                "content_hash": digest,
                "tokens": chunk.tokens,
                "encoding": encoding,
            }
            if history:
                payload["history"] = True  # only where true: Edge converts every value it returns
            if chunk.code_open:
                payload["code_open"] = True
            if chunk.code_close:
                payload["code_close"] = True
            if chunk.position == 0:
                # What the listing shows of a document rides on its head alone: Edge converts a
                # payload value by value, a string for several µs, and no search reads these.
                payload["format"] = doc.format
                payload["chunk_count"] = len(chunks)
                payload["ingested_at"] = now
                payload["metadata"] = doc.metadata
            points.append(
                ChunkPoint(
                    chunk_point_id(doc.id, digest, chunk.position),
                    sparse.encode_document(index_text(title, chunk)),
                    dict(payload),
                )
            )
        return _Prepared(doc, digest, points, current)

    async def _embed(self, prepared: list[_Prepared]) -> None:
        if self.embedder is None or not prepared:
            return
        texts = [
            index_text(p.chunk.get("title"), None, p.chunk["headings"], p.chunk["text"])
            for item in prepared
            for p in item.points
        ]
        vectors = await self.embedder.embed_documents(texts, Usage())
        await self.store.ensure(len(vectors[0]) if vectors else None)
        it = iter(vectors)
        for item in prepared:
            item.points[:] = [ChunkPoint(p.id, p.sparse, p.payload, next(it)) for p in item.points]

    async def _write(self, prepared: list[_Prepared], result: IngestResult) -> None:
        if not prepared:
            return
        async with self._gate.writing(), self.store.batch():
            await self._switch(prepared, result)

    async def _switch(self, prepared: list[_Prepared], result: IngestResult) -> None:
        """Steps 0-3 of the module's docstring: body, head, then the other versions' chunks."""
        await self.store.reserve(points_bytes([p for item in prepared for p in item.points]))
        body = [p for item in prepared for p in item.points[1:]]
        for start in range(0, len(body), WRITE_BATCH):
            await self.store.upsert(body[start : start + WRITE_BATCH])
        heads = [item.points[0] for item in prepared if item.points]
        for start in range(0, len(heads), WRITE_BATCH):
            await self.store.upsert(heads[start : start + WRITE_BATCH])
        for item in prepared:
            await self.store.delete(item.document.id, other_than_hash=item.content_hash)
            # What the document lost: chunks at positions its new version no longer has.
            result.deleted_chunks += max(0, item.previous_chunks - len(item.points))
        written = sum(len(item.points) for item in prepared)
        result.chunks += written
        self.counters.points_written += written
        self.counters.documents_written += len(prepared)

    async def snapshot(self, destination: str) -> dict[str, Any]:
        """The store's snapshot, taken between ingests' writes, never in the middle of one."""
        async with self._gate.closed():
            return await self.store.snapshot(destination)

    async def delete(self, document_id: str) -> int:
        """Remove every chunk of a document; returns how many were removed."""
        async with self._locks.setdefault(document_id, asyncio.Lock()):
            return await self.store.delete(document_id)


def index_text(
    title: str | None,
    chunk: Chunk | None,
    headings: Sequence[str] = (),
    text: str = "",
) -> str:
    """What BM25 and the embedding see: the title and heading path give a chunk its context."""
    if chunk is not None:
        headings, text = chunk.headings, chunk.text
    context = " › ".join([t for t in [title, *headings] if t])
    return f"{context}\n{text}" if context else text


def _metadata_url(metadata: dict[str, Any]) -> str | None:
    value = metadata.get("url")
    return value if isinstance(value, str) and value else None


def _metadata_tags(metadata: dict[str, Any]) -> list[str]:
    value = metadata.get("tags")
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list):
        return [str(t) for t in value if str(t).strip()]
    return []
