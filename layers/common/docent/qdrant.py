"""A Qdrant server (or Qdrant Cloud) as the vector store, through qdrant-client's async client.

REST by default (gRPC pulls in a second of imports on a cold start; `QDRANT_PREFER_GRPC` opts
in); no version check at construction, so nothing touches the network until the first call.
Writes wait for acknowledgement. The same class runs on qdrant-client's local mode
(`location=":memory:"`), which the tests use as the stand-in for a server.

The REST calls go through httpx2, not the httpx client qdrant-client builds: a request deadline,
a health probe's bound or a visitor who leaves cancels calls in flight, and httpx's pool loses a
slot to each one cancelled while its connection opens (see `docent.upstash`); with a remote
server's pool of 100 that wedged every later call within a few bursts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from docent import vectors
from docent.config import Settings
from docent.errors import ConfigurationError, Unavailable, UpstreamError, UpstreamTimeout
from docent.vectors import DENSE, SPARSE, ChunkPoint, Hit, Query, SearchFilter

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

T = TypeVar("T")
log = logging.getLogger("docent.qdrant")
SNAPSHOT_TIMEOUT_S = 600.0


class QdrantStore:
    """`VectorStore` on a Qdrant collection."""

    def __init__(
        self,
        collection: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        location: str | None = None,
        prefer_grpc: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        self.collection = collection
        self._options: dict[str, Any] = {
            "url": url,
            "api_key": api_key,
            "location": location,
            "prefer_grpc": prefer_grpc,
            "timeout": max(1, round(timeout_s)),
        }
        self._client: AsyncQdrantClient | None = None
        self._ready = False
        self._dense_size: int | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> QdrantStore:
        return cls(
            settings.qdrant_collection,
            url=settings.qdrant_url,
            api_key=settings.qdrant_api_key,
            prefer_grpc=settings.qdrant_prefer_grpc,
            timeout_s=min(settings.request_timeout_s, 10.0),
        )

    def _connect(self) -> AsyncQdrantClient:
        if self._client is None:
            from qdrant_client import AsyncQdrantClient

            options = {k: v for k, v in self._options.items() if v is not None}
            if "location" in options:
                options.pop("timeout", None)
            self._client = AsyncQdrantClient(**options, check_compatibility=False)
            if "url" in options:
                _rest_on_httpx2(self._client)
        return self._client

    async def _call(self, fn: Callable[[AsyncQdrantClient], Awaitable[T]]) -> T:
        """One client call, its failures mapped onto the error tree (no URL leaks): a timeout is
        a 504, a refusal the server answered a 502, anything else (a dropped connection, the
        client's own errors) a 503 worth retrying."""
        import httpx
        import httpx2

        try:
            return await fn(self._connect())
        except Exception as exc:
            # qdrant-client wraps transport failures in ResponseHandlingException(source=...).
            cause = getattr(exc, "source", None) or exc
            timeouts = (TimeoutError, httpx.TimeoutException, httpx2.TimeoutException)
            if isinstance(cause, timeouts):
                raise UpstreamTimeout("The vector store did not answer in time.") from exc
            if isinstance(cause, (ConnectionError, httpx.TransportError, httpx2.TransportError)):
                raise Unavailable(
                    "The vector store is unreachable.", headers={"Retry-After": "5"}
                ) from exc
            if _is_response_error(exc):
                raise UpstreamError("The vector store refused the request.") from exc
            log.warning("vector store failed: %s", type(exc).__name__, exc_info=exc)
            raise Unavailable(
                "The vector store is unavailable.", headers={"Retry-After": "5"}
            ) from exc

    async def _collection_ready(self) -> None:
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            await self._create(None)

    async def _create(self, dense_size: int | None) -> None:
        from qdrant_client import models

        exists = await self._call(lambda c: c.collection_exists(self.collection))
        if not exists:
            dense = (
                {DENSE: models.VectorParams(size=dense_size, distance=models.Distance.COSINE)}
                if dense_size
                else {}
            )
            await self._call(
                lambda c: c.create_collection(
                    self.collection,
                    vectors_config=dense,
                    sparse_vectors_config={
                        SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                )
            )
        info = await self._call(lambda c: c.get_collection(self.collection))
        vectors_config = info.config.params.vectors
        if isinstance(vectors_config, dict) and DENSE in vectors_config:
            self._dense_size = vectors_config[DENSE].size
        schema = info.payload_schema or {}
        wanted = [(n, models.PayloadSchemaType.KEYWORD) for n in vectors.KEYWORD_FIELDS] + [
            (n, models.PayloadSchemaType.INTEGER) for n in vectors.INTEGER_FIELDS
        ]
        for name, kind in wanted:
            if name not in schema:
                await self._index(name, kind)
        self._ready = True

    async def _index(self, name: str, kind: Any) -> None:
        await self._call(lambda c: c.create_payload_index(self.collection, name, kind, wait=True))

    async def ensure(self, dense_size: int | None) -> None:
        await self._collection_ready()
        if dense_size is None or self._dense_size == dense_size:
            return
        async with self._lock:
            if self._dense_size is not None and self._dense_size != dense_size:
                raise ConfigurationError(
                    f"Collection {self.collection!r} holds {self._dense_size}-dimensional vectors "
                    f"but the embedding model gives {dense_size}: set EMBEDDING_DIMENSIONS to "
                    "match, or set QDRANT_COLLECTION to a new collection and re-ingest."
                )
            if self._dense_size is None:
                count = await self._call(lambda c: c.count(self.collection, exact=True))
                if count.count:
                    raise ConfigurationError(
                        f"Collection {self.collection!r} was built without dense vectors: to "
                        "enable hybrid search, set QDRANT_COLLECTION to a new one and re-ingest."
                    )
                await self._call(lambda c: c.delete_collection(self.collection))
                self._ready = False
                await self._create(dense_size)

    def batch(self) -> contextlib.nullcontext[None]:
        """Nothing to gather: each write waits until the server has applied it (`wait=True`)."""
        return contextlib.nullcontext()

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        from qdrant_client import models

        await self._collection_ready()
        structs = [
            models.PointStruct(id=p.id, vector=_vectors(models, p), payload=p.payload)
            for p in points
        ]
        await self._call(lambda c: c.upsert(self.collection, points=structs, wait=True))

    async def retrieve(self, ids: Sequence[str]) -> list[Hit]:
        await self._collection_ready()
        records = await self._call(
            lambda c: c.retrieve(self.collection, ids=list(ids), with_payload=True)
        )
        return [Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records]

    async def search_current(self, query: Query) -> list[Hit]:
        asked: Query | None = query
        kept: list[Hit] = []
        for _ in range(vectors.STALE_ROUNDS):
            if asked is None:
                break
            hits = await self.search(asked)
            heads, missing = vectors.heads_among(hits)
            heads.update(await self.heads(missing))
            kept = vectors.current_hits(hits, heads)
            asked = vectors.search_again(asked, hits, kept)
        return kept

    async def heads(self, document_ids: Sequence[str]) -> dict[str, str]:
        if not document_ids:
            return {}
        await self._collection_ready()
        ids = [vectors.point_id(d, 0) for d in document_ids]
        records = await self._call(
            lambda c: c.retrieve(self.collection, ids=ids, with_payload=vectors.HEAD_FIELDS)
        )
        return vectors.head_hashes([r.payload for r in records])

    async def count(self, document_id: str, *, other_than_hash: str | None = None) -> int:
        await self._collection_ready()
        flt = _document_filter(document_id, other_than_hash)
        result = await self._call(lambda c: c.count(self.collection, count_filter=flt, exact=True))
        return int(result.count)

    async def versions(self, heads: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
        out = []
        for document_id, content_hash in heads:
            stale = await self.count(document_id, other_than_hash=content_hash)
            out.append((await self.count(document_id) - stale, stale))
        return out

    async def delete(self, document_id: str, *, other_than_hash: str | None = None) -> int:
        from qdrant_client import models

        await self._collection_ready()
        flt = _document_filter(document_id, other_than_hash)
        count = await self.count(document_id, other_than_hash=other_than_hash)
        if count:
            await self._call(
                lambda c: c.delete(
                    self.collection, points_selector=models.FilterSelector(filter=flt), wait=True
                )
            )
        return count

    async def search(self, query: Query) -> list[Hit]:
        from qdrant_client import models

        await self._collection_ready()
        flt = _search_filter(query.filter, query.stale)
        sparse = models.SparseVector(indices=query.sparse.indices, values=query.sparse.values)
        if query.dense is None or self._dense_size is None:
            response = await self._call(
                lambda c: c.query_points(
                    self.collection,
                    query=sparse,
                    using=SPARSE,
                    query_filter=flt,
                    limit=query.limit,
                    with_payload=True,
                )
            )
            return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]
        # Hybrid: each arm's candidates (ids and scores) in one round trip, fused here as Edge
        # fuses them (`vectors.fuse`), then the winners' payloads.
        depth = query.limit * vectors.PREFETCH_FACTOR
        arms = [models.QueryRequest(query=query.dense, using=DENSE, filter=flt, limit=depth)]
        if query.sparse.indices:
            arms.insert(0, models.QueryRequest(query=sparse, using=SPARSE, filter=flt, limit=depth))
        responses = await self._call(lambda c: c.query_batch_points(self.collection, arms))
        found = [[(str(p.id), float(p.score)) for p in r.points] for r in responses]
        bm25 = found[0] if len(found) == 2 else []
        ranked = vectors.fuse(bm25, found[-1], query.limit)
        if not ranked:
            return []
        records = await self._call(
            lambda c: c.retrieve(
                self.collection, ids=[point for point, _ in ranked], with_payload=True
            )
        )
        return vectors.in_order({str(r.id): dict(r.payload or {}) for r in records}, ranked, bm25)

    async def documents(self, limit: int, offset: str | None) -> tuple[list[Hit], str | None]:
        from qdrant_client import models

        await self._collection_ready()
        flt = models.Filter(
            must=[models.FieldCondition(key="position", match=models.MatchValue(value=0))]
        )
        records, next_offset = await self._call(
            lambda c: c.scroll(
                self.collection,
                scroll_filter=flt,
                limit=limit,
                offset=offset,
                with_payload=models.PayloadSelectorExclude(exclude=["text"]),
            )
        )
        hits = [Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records]
        return hits, (str(next_offset) if next_offset is not None else None)

    async def total(self) -> int:
        await self._collection_ready()
        result = await self._call(lambda c: c.count(self.collection, exact=True))
        return int(result.count)

    async def ping(self) -> None:
        await self._call(lambda c: c.get_collections())

    async def reserve(self, write_bytes: int) -> None:
        """A Qdrant server manages its own disk (and answers an error when full)."""

    async def snapshot(self, destination: str) -> dict[str, Any]:
        """The server's own collection snapshot, created there and downloaded to `destination`."""
        url = self._server_url()
        await self._collection_ready()
        described = await self._call(lambda c: c.create_snapshot(self.collection, wait=True))
        if described is None:
            raise UpstreamError("The vector store did not create a snapshot.")
        name = described.name
        address = f"{url}/collections/{self.collection}/snapshots/{name}"
        try:
            size = await asyncio.to_thread(_download, address, self._headers(), destination)
        finally:
            await self._call(lambda c: c.delete_snapshot(self.collection, name, wait=True))
        return {"path": destination, "bytes": size, "name": name}

    async def restore(self, source: str) -> dict[str, Any]:
        """Upload a snapshot file: the server replaces the collection with it."""
        url = self._server_url()
        address = f"{url}/collections/{self.collection}/snapshots/upload"
        await asyncio.to_thread(_upload, address, self._headers(), source)
        self._ready = False
        self._dense_size = None
        return {"path": source}

    def _server_url(self) -> str:
        url = self._options.get("url")
        if not url:
            raise ConfigurationError("Snapshots of a Qdrant collection need a server (QDRANT_URL).")
        return str(url).rstrip("/")

    def _headers(self) -> dict[str, str]:
        key = self._options.get("api_key")
        return {"api-key": key} if key else {}

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


def _rest_on_httpx2(client: AsyncQdrantClient) -> None:
    """Give qdrant-client's REST API client an httpx2 client built with its own settings (the
    module docstring says why). It builds each request and sends it through that one client."""
    import httpx2

    remote = cast(Any, client)._client
    api = remote.openapi_client.client
    args = dict(remote._rest_args)
    if "auth" in args:  # an httpx.Auth (a token provider): only httpx can run it
        return
    limits = args.pop("limits", None)
    if limits is not None:
        args["limits"] = httpx2.Limits(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
        )
    api._async_client = httpx2.AsyncClient(**args)


def _download(address: str, headers: dict[str, str], destination: str) -> int:
    """Stream a snapshot from the server to `destination` (via `.partial`); its size in bytes."""
    import httpx

    target = Path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with (
            httpx.Client(headers=headers, timeout=SNAPSHOT_TIMEOUT_S) as http,
            http.stream("GET", address) as response,
        ):
            if response.status_code != 200:
                raise UpstreamError("The vector store refused to hand over its snapshot.")
            with partial.open("wb") as out:
                for block in response.iter_bytes():
                    out.write(block)
        os.replace(partial, target)
    except httpx.TransportError as exc:
        raise Unavailable("The vector store is unreachable.") from exc
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size


def _upload(address: str, headers: dict[str, str], source: str) -> None:
    """Send a snapshot file to the server, which recovers the collection from it."""
    import httpx

    try:
        with (
            httpx.Client(headers=headers, timeout=SNAPSHOT_TIMEOUT_S) as http,
            open(source, "rb") as handle,
        ):
            response = http.post(
                address,
                params={"priority": "snapshot", "wait": "true"},
                files={"snapshot": (Path(source).name, handle)},
            )
    except httpx.TransportError as exc:
        raise Unavailable("The vector store is unreachable.") from exc
    if response.status_code != 200:
        raise UpstreamError(f"The vector store refused the snapshot ({response.status_code}).")


def _is_response_error(exc: Exception) -> bool:
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    return isinstance(exc, (UnexpectedResponse, ResponseHandlingException))


def _vectors(models: Any, point: ChunkPoint) -> dict[str, Any]:
    named: dict[str, Any] = {
        SPARSE: models.SparseVector(indices=point.sparse.indices, values=point.sparse.values)
    }
    if point.dense is not None:
        named[DENSE] = point.dense
    return named


def _document_filter(document_id: str, other_than_hash: str | None) -> Any:
    from qdrant_client import models

    must: list[Any] = [
        models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))
    ]
    must_not: list[Any] | None = (
        [models.FieldCondition(key="content_hash", match=models.MatchValue(value=other_than_hash))]
        if other_than_hash is not None
        else None
    )
    return models.Filter(must=must, must_not=must_not)


def _search_filter(flt: SearchFilter, stale: Sequence[tuple[str, str]] = ()) -> Any:
    from qdrant_client import models

    must: list[Any] = []
    if flt.document_id is not None:
        must.append(
            models.FieldCondition(key="document_id", match=models.MatchValue(value=flt.document_id))
        )
    if flt.tags:
        must.append(models.FieldCondition(key="tags", match=models.MatchAny(any=list(flt.tags))))
    must_not: list[Any] = [
        models.Filter(
            must=[
                models.FieldCondition(key="document_id", match=models.MatchValue(value=document)),
                models.FieldCondition(key="content_hash", match=models.MatchAny(any=hashes)),
            ]
        )
        for document, hashes in vectors.by_document(stale).items()
    ]
    if not (must or must_not):
        return None
    return models.Filter(must=must or None, must_not=must_not or None)
