"""A development and test tool: a local Qdrant server stand-in over Qdrant Edge.

Lambda functions share their index through a Qdrant server (`QDRANT_URL`); locally there is
none. This serves the subset of Qdrant's REST API that Docent's `QdrantStore` calls through
qdrant-client (collections: exists, create, info, delete, payload index; points: upsert,
retrieve, count, delete by filter, query (one or a batch) with sparse, dense and RRF prefetch,
scroll;
collection snapshots: create, list, download, delete, recover from an upload or a location),
over one Qdrant Edge shard per collection on disk. So ingest and chat running in separate
processes share one store exactly as on Lambda, and qdrant-client's real HTTP transport
(timeouts, status errors, retries) is exercised. Responses are built with qdrant-client's own
models, so a reply the client could not parse fails here first.

Snapshots follow the shapes of Qdrant's REST API (`/collections/{name}/snapshots...`), but the
file is the stand-in's own (a `docent.backup` archive of the Edge shard), not Qdrant's format:
a snapshot taken here restores here only. A location to recover from is an `http(s)://` URL or
a `file://` path inside the stand-in's snapshots folder.

Not for production: one process, one writer, no TLS; `--api-key` checks the `api-key` header.
Shipped outside the Lambda layer (layers/common/Makefile leaves it out).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from docent.errors import BadRequest

SNAPSHOTS = ".snapshots"  # under the root; no collection name starts with a dot
CHECKSUM = ".checksum"


class NotFoundError(Exception):
    pass


class Collections:
    """Edge shards by collection name, under one folder; every call under one lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, Any] = {}
        self.lock = threading.Lock()

    def _path(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad collection name {name!r}")
        return self.root / name

    def exists(self, name: str) -> bool:
        return name in self._shards or (self._path(name) / "edge_config.json").exists()

    def shard(self, name: str) -> Any:
        import qdrant_edge as qe

        if name not in self._shards:
            if not self.exists(name):
                raise NotFoundError(f"Collection `{name}` doesn't exist!")
            self._shards[name] = qe.EdgeShard.load(str(self._path(name)))
        return self._shards[name]

    def create(self, name: str, body: dict[str, Any]) -> bool:
        import qdrant_edge as qe

        if self.exists(name):
            raise ValueError(f"Collection `{name}` already exists!")
        sparse = {
            vector: qe.EdgeSparseVectorParams(
                modifier=qe.Modifier.Idf if (p or {}).get("modifier") == "idf" else None
            )
            for vector, p in (body.get("sparse_vectors") or {}).items()
        }
        path = self._path(name)
        path.mkdir(parents=True)
        shard = qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors={}, sparse_vectors=sparse))
        vectors = body.get("vectors") or {}
        for vector, params in vectors.items():
            distance = {"Cosine": qe.Distance.Cosine, "Dot": qe.Distance.Dot}[params["distance"]]
            shard.update(qe.UpdateOperation.create_dense_vector(vector, params["size"], distance))
        shard.flush()
        self._shards[name] = shard
        return True

    def delete(self, name: str) -> bool:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        if not self.exists(name):
            return False
        shutil.rmtree(self._path(name))
        return True

    def dense(self, name: str) -> dict[str, Any]:
        config = json.loads((self._path(name) / "edge_config.json").read_text())
        return dict(config.get("vectors") or {})

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()
        self._shards.clear()

    # Snapshots ------------------------------------------------------------------------------

    def snapshot_folder(self, name: str) -> Path:
        return self.root / SNAPSHOTS / self._path(name).name

    def snapshot_file(self, name: str, snapshot: str) -> Path:
        if "/" in snapshot or snapshot.startswith(".") or snapshot.endswith(CHECKSUM):
            raise NotFoundError(f"Snapshot {snapshot!r} not found")
        path = self.snapshot_folder(name) / snapshot
        if not path.is_file():
            raise NotFoundError(f"Snapshot {snapshot} not found")
        return path

    def create_snapshot(self, name: str) -> Any:
        """Archive the collection's shard, flushed, as `{name}-{time}.snapshot` with its SHA-256."""
        import qdrant_edge as qe

        from docent import backup

        shard = self.shard(name)
        shard.flush()
        points = shard.count(qe.CountRequest(exact=True))
        folder = self.snapshot_folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S-%f")
        target = folder / f"{name}-{stamp}.snapshot"
        backup.archive(str(self._path(name)), str(target), points)
        (folder / (target.name + CHECKSUM)).write_text(_sha256(target))
        return self._describe(target)

    def list_snapshots(self, name: str) -> list[Any]:
        if not self.exists(name):
            raise NotFoundError(f"Collection `{name}` doesn't exist!")
        folder = self.snapshot_folder(name)
        if not folder.is_dir():
            return []
        return [
            self._describe(path)
            for path in sorted(folder.iterdir())
            if path.is_file() and path.suffix == ".snapshot"
        ]

    def delete_snapshot(self, name: str, snapshot: str) -> bool:
        path = self.snapshot_file(name, snapshot)
        path.unlink()
        path.with_name(path.name + CHECKSUM).unlink(missing_ok=True)
        return True

    def recover(self, name: str, source: Path, checksum: str | None) -> bool:
        """Replace the collection (or create it) with the snapshot file `source`, checked first:
        its SHA-256 if given, then the archive (a damaged one changes nothing)."""
        from docent import backup

        if checksum is not None and not hmac.compare_digest(_sha256(source), checksum.lower()):
            raise ValueError("Snapshot checksum mismatch")
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        backup.unpack(str(source), str(self._path(name)))
        return True

    def local_snapshot(self, location: str) -> Path:
        """The file a `file://` location names, which must be in the snapshots folder."""
        path = Path(location.removeprefix("file://")).resolve()
        if not path.is_relative_to((self.root / SNAPSHOTS).resolve()) or not path.is_file():
            raise ValueError(f"Snapshot file {location!r} is not in the snapshots folder")
        return path

    def _describe(self, path: Path) -> Any:
        from qdrant_client.http import models

        stat = path.stat()
        sums = path.with_name(path.name + CHECKSUM)
        return models.SnapshotDescription(
            name=path.name,
            creation_time=datetime.fromtimestamp(stat.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            size=stat.st_size,
            checksum=sums.read_text().strip() if sums.exists() else None,
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _filter(qe: Any, body: dict[str, Any] | None) -> Any:
    if not body:
        return None

    def conditions(items: list[dict[str, Any]] | None) -> list[Any] | None:
        if not items:
            return None
        built = []
        for item in items:
            match = item.get("match") or {}
            if "key" not in item and ("must" in item or "must_not" in item):
                built.append(_filter(qe, item))  # a nested filter: all of its conditions
            elif "value" in match:
                built.append(qe.FieldCondition(item["key"], match=qe.MatchValue(match["value"])))
            elif "any" in match:
                built.append(qe.FieldCondition(item["key"], match=qe.MatchAny(match["any"])))
            else:
                raise ValueError(f"unsupported condition {item!r}")
        return built

    return qe.Filter(must=conditions(body.get("must")), must_not=conditions(body.get("must_not")))


def _vector(qe: Any, value: Any) -> Any:
    """A query vector: `{"nearest": ...}` or the vector itself; sparse as indices and values."""
    if isinstance(value, dict) and "nearest" in value:
        value = value["nearest"]
    if isinstance(value, dict):
        return qe.SparseVector(value["indices"], value["values"])
    return list(value)


def _query(qe: Any, spec: dict[str, Any]) -> Any:
    query = spec.get("query")
    if isinstance(query, dict) and "rrf" in query:
        return qe.Fusion.Rrf(k=(query["rrf"] or {}).get("k", 60))
    return qe.Query.Nearest(_vector(qe, query), using=spec.get("using"))


def _point_vectors(qe: Any, vector: dict[str, Any]) -> dict[str, Any]:
    return {
        name: qe.SparseVector(v["indices"], v["values"]) if isinstance(v, dict) else list(v)
        for name, v in vector.items()
    }


def _payload_selector(qe: Any, value: Any) -> Any:
    if isinstance(value, dict) and "exclude" in value:
        return qe.PayloadSelector.Exclude(value["exclude"])
    return bool(value) if value is not None else True


class StandIn:
    """The REST routes over `Collections`."""

    def __init__(self, root: Path, api_key: str | None = None) -> None:
        self.collections = Collections(root)
        self.api_key = api_key

    def _locked(self, fn: Callable[[], Any]) -> Any:
        with self.collections.lock:
            return fn()

    def _refused(self, request: Request) -> Response | None:
        given = request.headers.get("api-key", "")
        if self.api_key and not hmac.compare_digest(given.encode(), self.api_key.encode()):
            return _failed("Invalid api-key", 401)
        return None

    async def _handle(
        self,
        request: Request,
        fn: Callable[[dict[str, Any]], Any],
        *,
        read_body: bool = True,
    ) -> Response:
        import asyncio

        from pydantic import BaseModel

        started = time.perf_counter()
        refused = self._refused(request)
        if refused is not None:
            return refused
        raw = await request.body() if read_body else b""
        body = json.loads(raw) if raw else {}
        try:
            result = await asyncio.to_thread(self._locked, lambda: fn(body))
        except NotFoundError as exc:
            return _failed(f"Not found: {exc}", 404)
        except (ValueError, KeyError, TypeError, BadRequest) as exc:
            return _failed(f"Bad request: {exc}")
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        elif isinstance(result, list):
            result = [r.model_dump(mode="json") for r in result]
        elapsed = time.perf_counter() - started
        if request.query_params.get("wait") == "false":
            # Qdrant's answer to `wait=false`: accepted, no result (the stand-in has done it).
            return JSONResponse({"result": None, "status": "accepted", "time": elapsed}, 202)
        return JSONResponse({"result": result, "status": "ok", "time": elapsed})

    # Collections ----------------------------------------------------------------------------

    async def collection(self, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "PUT":
            return await self._handle(request, lambda body: self.collections.create(name, body))
        if request.method == "DELETE":
            return await self._handle(request, lambda body: self.collections.delete(name))
        return await self._handle(request, lambda body: self._info(name))

    async def exists(self, request: Request) -> Response:
        from qdrant_client.http import models

        name = request.path_params["name"]
        return await self._handle(
            request, lambda body: models.CollectionExistence(exists=self.collections.exists(name))
        )

    def _info(self, name: str) -> Any:
        import qdrant_edge as qe
        from qdrant_client.http import models

        shard = self.collections.shard(name)
        info = shard.info()
        points = shard.count(qe.CountRequest(exact=True))
        kinds = {"Keyword": "keyword", "Integer": "integer"}
        schema = {
            field: models.PayloadIndexInfo(
                data_type=models.PayloadSchemaType(
                    kinds.get(str(getattr(v, "data_type", v)).split(".")[-1], "keyword")
                ),
                points=0,
            )
            for field, v in info.payload_schema.items()
        }
        vectors = {
            vector: models.VectorParams(
                size=params["size"], distance=models.Distance(params.get("distance", "Cosine"))
            )
            for vector, params in self.collections.dense(name).items()
        }
        return models.CollectionInfo(
            status=models.CollectionStatus.GREEN,
            optimizer_status=models.OptimizersStatusOneOf.OK,
            points_count=points,
            indexed_vectors_count=0,
            segments_count=1,
            config=models.CollectionConfig(
                params=models.CollectionParams(
                    vectors=vectors,
                    sparse_vectors={
                        "bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                ),
                hnsw_config=models.HnswConfig(m=16, ef_construct=100, full_scan_threshold=10000),
                optimizer_config=models.OptimizersConfig(
                    deleted_threshold=0.2,
                    vacuum_min_vector_number=1000,
                    default_segment_number=0,
                    flush_interval_sec=5,
                ),
            ),
            payload_schema=schema,
        )

    async def index(self, request: Request) -> Response:
        import qdrant_edge as qe

        kinds = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}

        def create(body: dict[str, Any]) -> Any:
            schema = body["field_schema"]
            kind = schema if isinstance(schema, str) else schema["type"]
            return qe.UpdateOperation.create_field_index(body["field_name"], kinds[kind])

        return await self._update(request, create)

    async def _update(
        self, request: Request, operation: Callable[[dict[str, Any]], Any]
    ) -> Response:
        """A write route: the update `operation` makes of the body, applied to the collection's
        shard and flushed before the answer."""
        name = request.path_params["name"]

        def apply(body: dict[str, Any]) -> Any:
            shard = self.collections.shard(name)
            shard.update(operation(body))
            shard.flush()
            return _completed()

        return await self._handle(request, apply)

    # Points ---------------------------------------------------------------------------------

    async def upsert(self, request: Request) -> Response:
        import qdrant_edge as qe

        def write(body: dict[str, Any]) -> Any:
            points = [
                qe.Point(p["id"], _point_vectors(qe, p.get("vector") or {}), p.get("payload") or {})
                for p in body["points"]
            ]
            return qe.UpdateOperation.upsert_points(points)

        return await self._update(request, write)

    async def retrieve(self, request: Request) -> Response:
        from qdrant_client.http import models

        name = request.path_params["name"]

        def read(body: dict[str, Any]) -> Any:
            records = self.collections.shard(name).retrieve(list(body["ids"]), True, False)
            return [models.Record(id=str(r.id), payload=dict(r.payload or {})) for r in records]

        return await self._handle(request, read)

    async def count(self, request: Request) -> Response:
        import qdrant_edge as qe
        from qdrant_client.http import models

        name = request.path_params["name"]

        def count(body: dict[str, Any]) -> Any:
            request = qe.CountRequest(exact=True, filter=_filter(qe, body.get("filter")))
            return models.CountResult(count=self.collections.shard(name).count(request))

        return await self._handle(request, count)

    async def delete(self, request: Request) -> Response:
        import qdrant_edge as qe

        def remove(body: dict[str, Any]) -> Any:
            if "filter" not in body:
                raise ValueError("only deletion by filter is supported")
            return qe.UpdateOperation.delete_points_by_filter(_filter(qe, body["filter"]))

        return await self._update(request, remove)

    def _search(self, name: str, body: dict[str, Any]) -> Any:
        """One query request (`POST .../points/query`'s body) on the collection's shard."""
        import qdrant_edge as qe
        from qdrant_client.http import models

        prefetches = [
            qe.Prefetch(
                p.get("limit", 10), query=_query(qe, p), filter=_filter(qe, p.get("filter"))
            )
            for p in body.get("prefetch") or []
        ]
        query = qe.QueryRequest(
            limit=body.get("limit", 10),
            query=_query(qe, body),
            prefetches=prefetches or None,
            filter=_filter(qe, body.get("filter")),
            with_payload=bool(body.get("with_payload", False)),
        )
        points = self.collections.shard(name).query(query)
        return models.QueryResponse(
            points=[
                models.ScoredPoint(
                    id=str(p.id), version=0, score=float(p.score), payload=dict(p.payload or {})
                )
                for p in points
            ]
        )

    async def query(self, request: Request) -> Response:
        name = request.path_params["name"]
        return await self._handle(request, lambda body: self._search(name, body))

    async def query_batch(self, request: Request) -> Response:
        name = request.path_params["name"]

        def searches(body: dict[str, Any]) -> Any:
            return [self._search(name, one) for one in body["searches"]]

        return await self._handle(request, searches)

    async def scroll(self, request: Request) -> Response:
        import qdrant_edge as qe
        from qdrant_client.http import models

        name = request.path_params["name"]

        def page(body: dict[str, Any]) -> Any:
            scroll = qe.ScrollRequest(
                offset=body.get("offset"),
                limit=body.get("limit", 10),
                filter=_filter(qe, body.get("filter")),
                with_payload=_payload_selector(qe, body.get("with_payload")),
            )
            records, next_offset = self.collections.shard(name).scroll(scroll)
            return models.ScrollResult(
                points=[
                    models.Record(id=str(r.id), payload=dict(r.payload or {})) for r in records
                ],
                next_page_offset=str(next_offset) if next_offset is not None else None,
            )

        return await self._handle(request, page)

    # Snapshots ------------------------------------------------------------------------------

    async def snapshots(self, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "POST":
            return await self._handle(request, lambda body: self.collections.create_snapshot(name))
        return await self._handle(request, lambda body: self.collections.list_snapshots(name))

    async def snapshot(self, request: Request) -> Response:
        name, snapshot = request.path_params["name"], request.path_params["snapshot"]
        if request.method == "DELETE":
            return await self._handle(
                request, lambda body: self.collections.delete_snapshot(name, snapshot)
            )
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            path = self.collections.snapshot_file(name, snapshot)
        except NotFoundError as exc:
            return _failed(f"Not found: {exc}", 404)
        return FileResponse(path, media_type="application/octet-stream", filename=snapshot)

    async def upload(self, request: Request) -> Response:
        """Recover from a snapshot sent as the multipart field `snapshot`."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        checksum = request.query_params.get("checksum")
        folder = self.collections.root / SNAPSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        fd, spooled = tempfile.mkstemp(prefix=".upload-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                async with request.form() as form:
                    sent = form.get("snapshot")
                    if sent is not None and not isinstance(sent, str):
                        while block := await sent.read(1 << 20):
                            out.write(block)
            if sent is None or isinstance(sent, str):
                return _failed("Bad request: no snapshot file sent")
            return await self._recover(request, name, Path(spooled), checksum)
        finally:
            _discard(spooled)

    async def recover(self, request: Request) -> Response:
        """Recover from a `location`: an http(s) URL to download, or a local `file://` path."""
        import asyncio

        refused = self._refused(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        body = await request.json()
        location, checksum = str(body.get("location", "")), body.get("checksum")
        if location.startswith("file://"):
            return await self._handle(
                request,
                lambda _: self.collections.recover(
                    name, self.collections.local_snapshot(location), checksum
                ),
                read_body=False,
            )
        if not location.startswith(("http://", "https://")):
            return _failed(f"Bad request: unsupported snapshot location {location!r}")
        folder = self.collections.root / SNAPSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        fd, fetched = tempfile.mkstemp(prefix=".download-", dir=folder)
        try:
            # Fetched outside the collections' lock: the URL may be this stand-in's own.
            try:
                await asyncio.to_thread(_download, location, body.get("api_key"), fd)
            except (ValueError, OSError) as exc:
                return _failed(f"Bad request: {exc}")
            return await self._recover(request, name, Path(fetched), checksum)
        finally:
            _discard(fetched)

    async def _recover(
        self, request: Request, name: str, snapshot: Path, checksum: str | None
    ) -> Response:
        """Recover `name` from a snapshot file here (spooled or fetched: its caller removes it)."""
        return await self._handle(
            request,
            lambda _: self.collections.recover(name, snapshot, checksum),
            read_body=False,
        )

    async def ready(self, request: Request) -> Response:
        return PlainTextResponse("all shards are ready")

    def app(self) -> Starlette:
        def on(path: str, endpoint: Any, *methods: str) -> Route:
            return Route(path, endpoint, methods=list(methods))

        prefix = "/collections/{name}"
        return Starlette(
            routes=[
                on("/readyz", self.ready, "GET"),
                on("/healthz", self.ready, "GET"),
                on(f"{prefix}/exists", self.exists, "GET"),
                on(f"{prefix}/index", self.index, "PUT"),
                on(f"{prefix}/points/count", self.count, "POST"),
                on(f"{prefix}/points/delete", self.delete, "POST"),
                on(f"{prefix}/points/query", self.query, "POST"),
                on(f"{prefix}/points/query/batch", self.query_batch, "POST"),
                on(f"{prefix}/points/scroll", self.scroll, "POST"),
                on(f"{prefix}/points", self.upsert, "PUT"),
                on(f"{prefix}/points", self.retrieve, "POST"),
                on(f"{prefix}/snapshots/upload", self.upload, "POST"),
                on(f"{prefix}/snapshots/recover", self.recover, "PUT"),
                on(f"{prefix}/snapshots/{{snapshot}}", self.snapshot, "GET", "DELETE"),
                on(f"{prefix}/snapshots", self.snapshots, "GET", "POST"),
                on(prefix, self.collection, "GET", "PUT", "DELETE"),
            ],
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        self.collections.close()


def _download(url: str, api_key: str | None, fd: int) -> None:
    """Write the file at `url` to the open descriptor `fd` (closed after)."""
    import httpx

    headers = {"api-key": api_key} if api_key else {}
    with os.fdopen(fd, "wb") as out:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=600) as response:
                if response.status_code != 200:
                    raise ValueError(f"snapshot download failed: {response.status_code}")
                for block in response.iter_bytes():
                    out.write(block)
        except httpx.HTTPError as exc:
            raise ValueError(f"snapshot download failed: {type(exc).__name__}") from exc


def _discard(path: str) -> None:
    with suppress(FileNotFoundError):
        os.remove(path)


def _failed(error: str, status: int = 400) -> JSONResponse:
    """An error answered as Qdrant answers one: `{"status": {"error": ...}, "time": 0}`."""
    return JSONResponse({"status": {"error": error}, "time": 0}, status)


def _completed() -> Any:
    from qdrant_client.http import models

    return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)


def serve(path: str, host: str, port: int, api_key: str | None = None) -> None:
    """Serve the stand-in until interrupted."""
    import uvicorn

    uvicorn.run(StandIn(Path(path), api_key).app(), host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Qdrant REST stand-in over Qdrant Edge (dev only)")
    parser.add_argument("--path", required=True, help="folder of the collections' shards")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    serve(args.path, args.host, args.port, args.api_key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
