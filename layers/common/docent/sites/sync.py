"""Sync: make the store hold exactly one source's current documents, touching no other source.

Every document ingested from a source carries `metadata["source"]` (a folder's absolute path, a
sitemap or page URL). A sync lists the store's documents, ingests the source's documents (the
ingestor skips unchanged ones by their content hash), then deletes that source's documents that
are gone. Deletion comes last and only after every document was read: a source that cannot be
read deletes nothing, and a file that fails to read keeps its old document. A document id held by
another source is left alone and reported. A sync cut short is safe to rerun: ingestion is
idempotent, deletion too, so the rerun ends in the same state a clean run would.

The algorithm is written once against `SyncTarget`; `LocalTarget` drives the embedded store,
`HttpTarget` a running server's API (`GET /documents`, `POST /ingest`, `DELETE /documents/{id}`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from docent.ingest import DocumentIn, IngestResult

if TYPE_CHECKING:
    import httpx

    from docent.services import Services

BATCH_DOCUMENTS = 50
BATCH_BYTES = 4 * 1024 * 1024


@dataclass
class SyncResult(IngestResult):
    """An ingest's counts (`documents` is every document the source listed and could read),
    split by what the sync found: new, changed or unchanged, and the documents it deleted."""

    added: int = 0
    changed: int = 0
    deleted: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


class SyncTarget(Protocol):
    async def sources(self) -> dict[str, str | None]:
        """Every stored document id with the source it came from (None: unknown)."""
        ...

    async def ingest(self, documents: list[DocumentIn]) -> IngestResult:
        """Ingest a batch; what the ingest did."""
        ...

    async def delete(self, document_id: str) -> None: ...


@dataclass(frozen=True)
class Unchanged:
    """A document the source says is unchanged (a 304, a sitemap lastmod): nothing to send."""

    id: str


# An item of a source: a document, an unchanged one, or (its id, why it could not be read).
Item = DocumentIn | Unchanged | tuple[str, str]


async def sync(
    target: SyncTarget,
    source: str,
    items: Iterable[Item],
    *,
    delete: bool = True,
    take_over: bool = False,
    progress: Callable[[int, SyncResult], None] | None = None,
) -> SyncResult:
    """Bring the target in step with the source's items; see the module docstring.

    `delete=False, take_over=True` is `docent ingest`: add and replace only, and a document id
    another source held becomes this source's (the user named this folder explicitly).
    """
    result = SyncResult()
    stored = await target.sources()
    mine = {doc_id for doc_id, owner in stored.items() if owner == source}
    seen: set[str] = set()
    batch: list[DocumentIn] = []
    size = 0

    async def flush() -> None:
        nonlocal batch, size
        if not batch:
            return
        done = await target.ingest(batch)
        known = sum(1 for d in batch if d.id in stored)
        result.add(done)
        result.added += len(batch) - known
        result.changed += known - done.unchanged
        if progress is not None:
            progress(len(batch), result)
        batch, size = [], 0

    for item in items:
        if isinstance(item, Unchanged):
            if item.id in mine:
                seen.add(item.id)
                result.add(IngestResult(documents=1, unchanged=1))
            continue
        if isinstance(item, tuple):
            doc_id, reason = item
            seen.add(doc_id)  # unreadable now: its stored version stays
            result.skipped.append({"id": doc_id, "reason": reason})
            if progress is not None:
                progress(1, result)
            continue
        owner = stored.get(item.id)
        if item.id in stored and owner is not None and owner != source and not take_over:
            result.skipped.append({"id": item.id, "reason": f"held by another source: {owner}"})
            continue
        if item.id in seen:
            result.skipped.append({"id": item.id, "reason": "listed twice in this source"})
            continue
        seen.add(item.id)
        doc_size = len(item.text.encode())
        if batch and (len(batch) >= BATCH_DOCUMENTS or size + doc_size > BATCH_BYTES):
            await flush()
        batch.append(item)
        size += doc_size
    await flush()
    if delete:
        for doc_id in sorted(mine - seen):
            await target.delete(doc_id)
            result.deleted += 1
    return result


def source_of_payload(payload: dict[str, Any]) -> str | None:
    metadata = payload.get("metadata")
    value = metadata.get("source") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None


class LocalTarget:
    """The embedded (or configured) store, through the services' ingestor."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def sources(self) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        offset: str | None = None
        while True:
            heads, offset = await self.services.store.documents(1000, offset)
            for head in heads:
                found[str(head.payload["document_id"])] = source_of_payload(head.payload)
            if offset is None:
                return found

    async def metadata(self, source: str) -> dict[str, dict[str, Any]]:
        """The stored metadata of each document of one source, by id."""
        found: dict[str, dict[str, Any]] = {}
        offset: str | None = None
        while True:
            heads, offset = await self.services.store.documents(1000, offset)
            for head in heads:
                if source_of_payload(head.payload) == source:
                    found[str(head.payload["document_id"])] = dict(head.payload["metadata"])
            if offset is None:
                return found

    async def ingest(self, documents: list[DocumentIn]) -> IngestResult:
        return await self.services.ingestor.ingest(documents)

    async def delete(self, document_id: str) -> None:
        await self.services.ingestor.delete(document_id)


class HttpTarget:
    """A running Docent server, with an admin key."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def sources(self) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        params: dict[str, Any] = {"limit": 1000}
        while True:
            response = await self.client.get("/documents", params=params)
            _check(response)
            body = response.json()
            for doc in body["documents"]:
                found[doc["id"]] = doc.get("source")
            if not body.get("next_offset"):
                return found
            params["offset"] = body["next_offset"]

    async def ingest(self, documents: list[DocumentIn]) -> IngestResult:
        response = await self.client.post(
            "/ingest", json={"documents": [as_json(d) for d in documents]}
        )
        _check(response)
        body = response.json()
        return IngestResult(**{f.name: int(body.get(f.name, 0)) for f in fields(IngestResult)})

    async def delete(self, document_id: str) -> None:
        response = await self.client.delete(f"/documents/{quote(document_id, safe='/')}")
        if response.status_code != 404:
            _check(response)


class ServerError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text}")


def _check(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise ServerError(response.status_code, response.text)


def as_json(doc: DocumentIn) -> dict[str, Any]:
    """A document as `POST /ingest` takes it."""
    body: dict[str, Any] = {"id": doc.id, "text": doc.text, "format": doc.format}
    if doc.title:
        body["title"] = doc.title
    if doc.url:
        body["url"] = doc.url
    if doc.tags:
        body["tags"] = list(doc.tags)
    if doc.metadata:
        body["metadata"] = doc.metadata
    return body
