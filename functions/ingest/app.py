"""The ingest function: `POST /ingest`, `POST /sync`, `GET /documents`,
`DELETE /documents/{id}`, `GET /snapshot` and `GET`/`DELETE /insights` (admin key)."""

from __future__ import annotations

import gc

# A cold start's imports allocate hundreds of thousands of objects that live as long as the
# process: collecting while they load only scans them again and again (about 7% of the
# function's first-response CPU). Collection resumes at the end of this module.
gc.disable()

import os
import shutil
import tempfile
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.background import BackgroundTask

from docent import insights, snapstart
from docent.aws import http_handler, is_storage_event, is_sync_event, storage_handler, sync_handler
from docent.errors import NotFound
from docent.ingest import DocumentIn
from docent.services import get_services
from docent.sites.sync import source_of_payload
from docent.web import AdminDep, AdminRoute, ServicesDep, SettingsDep, create_app, rate_limit

# Every route here is an admin route: the key and the limit are checked before a body is read.
router = APIRouter(tags=["documents"], route_class=AdminRoute)

Tag = Annotated[str, Field(min_length=1, max_length=100)]


class DocumentModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f]+$")]
    text: Annotated[str, Field(min_length=1)]
    title: Annotated[str | None, Field(max_length=1000)] = None
    url: Annotated[str | None, Field(max_length=2048)] = None
    format: Literal["markdown", "text", "html"] = "markdown"
    tags: Annotated[list[Tag], Field(max_length=50)] = []
    metadata: dict[str, Any] = {}


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: Annotated[list[DocumentModel], Field(min_length=1, max_length=1000)]


class IngestResponse(BaseModel):
    documents: int
    chunks: int
    unchanged: int
    deleted_chunks: int


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://\S+$")]

    @field_validator("source")
    @classmethod
    def _parses(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)  # raises ValueError (a 422) on a bad IPv6 literal
        if not parts.hostname:
            raise ValueError("a URL with a host name")
        _ = parts.port  # raises ValueError on a port out of range
        return value


class SyncResponse(BaseModel):
    added: int
    changed: int
    unchanged: int
    deleted: int
    skipped: list[dict[str, str]]


class DocumentInfo(BaseModel):
    id: str
    title: str | None
    url: str | None
    tags: list[str]
    format: str | None
    chunks: int
    content_hash: str
    ingested_at: int | None
    source: str | None = None


class DocumentList(BaseModel):
    documents: list[DocumentInfo]
    next_offset: str | None


class Deleted(BaseModel):
    document_id: str
    deleted_chunks: int


@router.post("/ingest", dependencies=[Depends(rate_limit("ingest"))], response_model=IngestResponse)
async def post_ingest(body: IngestRequest, _: AdminDep, services: ServicesDep) -> dict[str, int]:
    """Add or replace documents; unchanged documents cost nothing."""
    documents = [
        DocumentIn(
            id=d.id,
            text=d.text,
            title=d.title,
            url=d.url,
            format=d.format,
            tags=tuple(d.tags),
            metadata=d.metadata,
        )
        for d in body.documents
    ]
    result = await services.ingestor.ingest(documents)
    return result.as_dict()


@router.post("/sync", dependencies=[Depends(rate_limit("ingest"))], response_model=SyncResponse)
async def post_sync(
    body: SyncRequest, _: AdminDep, services: ServicesDep, settings: SettingsDep
) -> dict[str, Any]:
    """Sync a sitemap or page URL: add new pages, replace changed ones, delete the gone."""
    from docent.sites.fetch import Policy, sync_web

    result = await sync_web(services, body.source, Policy.from_settings(settings))
    return result.as_dict()


@router.get("/documents", response_model=DocumentList)
async def get_documents(
    _: AdminDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    # The opaque cursor is a point id (a UUID) from the previous page's `next_offset`.
    offset: Annotated[
        str | None,
        Query(pattern=r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"),
    ] = None,
) -> DocumentList:
    """The ingested documents, one entry each, paged by `next_offset`."""
    heads, next_offset = await services.store.documents(limit, offset)
    return DocumentList(
        documents=[
            DocumentInfo(
                id=h.chunk["document_id"],
                title=h.chunk.get("title"),
                url=h.chunk.get("url"),
                tags=h.chunk.get("tags") or [],
                format=h.chunk.get("format"),
                chunks=h.chunk.get("chunk_count", 0),
                content_hash=h.chunk.get("content_hash", ""),
                ingested_at=h.chunk.get("ingested_at"),
                source=source_of_payload(h.payload),
            )
            for h in heads
        ],
        next_offset=next_offset,
    )


@router.delete("/documents/{document_id:path}", response_model=Deleted)
async def delete_document(document_id: str, _: AdminDep, services: ServicesDep) -> Deleted:
    """Remove a document and every one of its chunks."""
    removed = await services.ingestor.delete(document_id)
    if not removed:
        raise NotFound(f"No document with id {document_id!r}.")
    return Deleted(document_id=document_id, deleted_chunks=removed)


# What `docent snapshot` fetches from `docent serve`. Outside the schema and the SAM template:
# on Lambda the collection is a Qdrant server's, snapshotted through its own API.
@router.get("/snapshot", response_class=FileResponse, include_in_schema=False)
async def get_snapshot(_: AdminDep, services: ServicesDep) -> FileResponse:
    """A consistent snapshot of the index, as a file (what `docent snapshot` saves)."""
    folder = tempfile.mkdtemp(prefix="docent-snapshot-")
    path = os.path.join(folder, "snapshot")
    try:
        await services.ingestor.snapshot(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename="docent-snapshot",
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )


@router.get("/insights", tags=["insights"])
async def get_insights(
    _: AdminDep, services: ServicesDep, days: Annotated[int, Query(ge=1, le=3650)] = 30
) -> dict[str, Any]:
    """What visitors asked, what the docs could not answer, how answers were rated, per day."""
    return await insights.read_report(services, days)


@router.delete("/insights", status_code=204, tags=["insights"])
async def delete_insights(_: AdminDep, services: ServicesDep) -> Response:
    """Erase every recorded answer, question, rating and comment."""
    await insights.erase(services)
    return Response(status_code=204)


app = create_app(router, title="Docent ingest")
snapstart.register("ingest")  # SnapStart: warm before the snapshot, fresh after
_http = http_handler(app)
_storage = storage_handler(get_services)
_sync = sync_handler(get_services)


def handler(event: dict[str, Any], context: Any) -> Any:
    """HTTP events, S3/SQS notifications of new documents, and scheduled syncs of a web source."""
    if is_storage_event(event):
        return _storage(event, context)
    if is_sync_event(event):
        return _sync(event, context)
    return _http(event, context)


# What the imports built is permanent: frozen, later collections never scan it again.
gc.freeze()
gc.enable()
