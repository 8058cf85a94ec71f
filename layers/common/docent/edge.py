"""Qdrant Edge: the embedded default vector store, in-process and on disk at QDRANT_PATH.

Edge is synchronous; each write runs in a worker thread. Edge holds the GIL while it writes,
flushes or vacuums, though, so those pause the event loop all the same (measured: about 17 ms a
write of 256 points, 20-80 ms a flush, half a second a vacuum after a re-ingest). Writes are
serialised by one lock (Edge has a single writer) and flushed before they return, or, inside
`EdgeStore.batch()` (an ingest's upserts and deletes), once when the batch ends: a re-ingest of
50 changed documents flushed 50-odd times before. Edge logs each write in its write-ahead log
first and replays the log when it opens, so a write left unflushed by a killed process is still
there on the next open.

Three guards keep the files whole:
- One process at a time: an exclusive OS lock (`flock`) on `<collection>.lock` beside the shard
  is taken before Edge opens or creates anything, so a refused second process (a second
  `docent serve`, a CLI) leaves the holder's files exactly as they were.
- Room before every write: Edge maps its files into memory, and a write into a mapped page on a
  full disk kills the process (SIGBUS). So each write first checks the free space of its disk
  (its own size four times over, QDRANT_DISK_RESERVE_MB, and the room the next load of the shard
  takes: Edge fills in its payload indexes' sparse files when it opens them) and is refused with
  a 507 if it is short, before anything is written. A shard is opened only with that room too,
  so a restart on a full disk serves reads instead of dying.
- Flat under churn: Edge runs its optimiser only when asked, so once the points deleted or
  overwritten reach a fifth of the live ones (at least VACUUM_FLOOR, at most
  QDRANT_OPTIMIZE_DELETES) the shard is optimised (vacuumed); the count is kept beside the
  shard (`<collection>.dead`), so runs of the CLI add up to a vacuum as a server's ingests
  do. A vacuum holds the GIL for about half a second, so in a server a due one waits until no
  answer is streaming (at most VACUUM_WAIT_S). And its write-ahead log is a ring of
  WAL_SEGMENT_BYTES files, not Edge's default 32 MB: Edge maps the open WAL file and frees a
  file only when the next one is full, so with 32 MB files every write added its bytes to the
  store and to resident memory until 64 MB were reached (the creep the soak saw, about 2 kB per
  ingest/delete cycle). Every write (or batch of writes) is flushed when it ends, so the log
  holds little that the segments do not already hold.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from docent.config import Settings
from docent.errors import ConfigurationError, InsufficientStorage, StoreLocked, backend
from docent.vectors import (
    DENSE,
    HEAD_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    PREFETCH_FACTOR,
    SPARSE,
    STALE_ROUNDS,
    ChunkPoint,
    Hit,
    Query,
    SearchFilter,
    by_document,
    current_hits,
    fuse,
    head_hashes,
    heads_among,
    in_order,
    point_id,
    points_bytes,
    search_again,
)

if TYPE_CHECKING:
    import qdrant_edge as qe

T = TypeVar("T")
log = logging.getLogger("docent.edge")
MB = 1024 * 1024
DEFAULT_RESERVE = 4 * MB
# Disk a write may take, per byte of its points: its WAL entry, the segment's pages, the indexes.
# Measured about 1.3 on a tmpfs (tests/test_store_integrity.py); four leaves a wide margin.
WRITE_FACTOR = 4
# What readiness expects the disk to take: a write of one full batch (256 chunks of ~2 kB) and more.
TYPICAL_WRITE = 1 * MB
# Free space a shard needs to open beyond what `load_bytes` counts (its WAL replay, its journals).
OPEN_FLOOR = 1 * MB
# Vacuum a segment once this share of its points are dead, whatever its size (Edge's defaults
# leave segments under 1000 points alone, and a small corpus under churn is all such segments).
DELETED_THRESHOLD = 0.2
VACUUM_MIN_POINTS = 10
# Edge's search pool. Its default (a thread per CPU and more) woke them all on every query: on 2
# cores and the bench's 1,322-chunk corpus, 0.63 ms of CPU per search against 0.21 with one
# thread, and slower (0.37 ms against 0.20 of wall time).
SEARCH_THREADS = 1
# Docent's own vacuum schedule: dead points (deleted or overwritten since the last vacuum) at a
# fifth of the live ones, and at least this many (a vacuum of a small shard takes milliseconds).
DEAD_SHARE = 0.2
VACUUM_FLOOR = 100
VACUUM_WAIT_S = 30.0  # the longest a due vacuum waits for no answer to be streaming
QUIET_POLL_S = 0.25
# The write-ahead log's file size. Edge reads `wal_options` from `edge_config.json` (qdrant-edge-py
# 0.9.0; its Python config does not expose it), keeps one closed file besides the open one, and
# gives a write larger than this a file of its own size. Edge's default is 32 MB.
WAL_SEGMENT_BYTES = 128 * 1024
WAL_OPTIONS = {"segment_capacity": WAL_SEGMENT_BYTES, "segment_queue_len": 0, "retain_closed": 1}


# Set inside `EdgeStore.batch()`: a write there leaves its flush to the batch's end.
_BATCHED: ContextVar[bool] = ContextVar("docent_edge_batched", default=False)

# At most this many documents' head hashes kept between writes (then they are looked up anew).
HEADS_KEPT = 10_000
# Payload fields no search reads: a document's metadata (a crawled page's anchors among them)
# rides on its head chunk, and copying it out with every hit cost CPU per question.
UNSEARCHED_FIELDS = ["metadata", "tags", "format", "chunk_count", "ingested_at"]


class FolderLock:
    """An exclusive, non-blocking `flock` on one file: held while the shard is open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLocked() from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def free_bytes(path: str | Path) -> int:
    """Bytes an unprivileged writer can still use on the filesystem holding `path`."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    stat = os.statvfs(where)
    return stat.f_bavail * stat.f_frsize


def load_bytes(path: str | Path) -> int:
    """Room the next load of the shard at `path` takes: opening a shard, Edge fills in the sparse
    files of its payload indexes (measured: 20 MB for Docent's five indexed fields)."""
    total = 0
    for index in (Path(path) / "segments").glob("*/payload_index"):
        for root, _, files in os.walk(index):
            for name in files:
                try:
                    stat = os.stat(os.path.join(root, name))
                except OSError:
                    continue
                total += max(0, stat.st_size - stat.st_blocks * 512)
    return total


def folder_bytes(path: str | Path) -> int:
    """Disk blocks the files under `path` really use (sparse WAL segments count what they hold)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


class EdgeStore:
    """`VectorStore` on a Qdrant Edge shard."""

    def __init__(
        self,
        path: str,
        *,
        reserve_bytes: int | None = None,
        optimize_after: int = 1000,
        quiet: Callable[[], bool] | None = None,
    ) -> None:
        self.path = path
        # Whether no answer is streaming now: a vacuum holds the GIL for about half a second,
        # so a due one waits for a quiet moment (at most VACUUM_WAIT_S). None: always quiet.
        self.quiet = quiet
        self.reserve_bytes = DEFAULT_RESERVE if reserve_bytes is None else reserve_bytes
        self.optimize_after = optimize_after
        self.lock = FolderLock(lock_path(path))
        self.optimizations = 0
        # Points deleted or overwritten since the last optimisation: read from `<collection>.dead`
        # when the shard opens, kept there as it changes (see `dead_path`).
        self._changed = 0
        self._waiting: asyncio.Task[None] | None = None  # a due vacuum waiting for quiet
        self._shard: qe.EdgeShard | None = None
        self._dense_size: int | None = None
        self._open_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        # Head hashes searches looked up (document id -> its head's hash; None: no head). This
        # process alone writes the shard (it holds the folder's lock), and every write clears
        # them when it ends: what a search kept before or during a write lasts until then.
        self._heads: dict[str, str | None] = {}
        self._unflushed = False  # a batched write is not flushed yet

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeStore:
        reserve = settings.qdrant_disk_reserve_mb
        return cls(
            os.path.join(settings.qdrant_path, settings.qdrant_collection),
            reserve_bytes=None if reserve is None else int(reserve * MB),
            optimize_after=settings.qdrant_optimize_deletes,
        )

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """One call into the engine (or its files), in a worker thread, its failures mapped onto
        the error tree: Docent's own pass (507, the lock's 503), a timeout is a 504, anything else
        Edge or the disk raises a 503 worth retrying, its message naming no path."""
        with backend("vector store"):
            return await asyncio.to_thread(fn, *args)

    def _inline(self, fn: Callable[..., T], *args: Any) -> T:
        """A search, run on the caller's thread with the same error mapping as `_run`. Edge holds
        the GIL while it searches (two threads searching take as long as one doing both), so a
        worker thread kept nothing else running meanwhile: it only added a hand-off (a thread
        woken, then the loop) to every chat request."""
        with backend("vector store"):
            return fn(*args)

    def required_bytes(self, write_bytes: int) -> int:
        """Free space a write of `write_bytes` must find on the disk before it starts: its own
        share, the reserve, and what the next load of the shard will take (so it reopens)."""
        return self.reserve_bytes + WRITE_FACTOR * write_bytes + load_bytes(self.path)

    def check_room(self, write_bytes: int) -> None:
        """Raise `InsufficientStorage` unless the disk has room for a write of this size."""
        free = free_bytes(self.path)
        needed = self.required_bytes(write_bytes)
        if free < needed:
            log.warning(
                "refusing a write: the disk is too full",
                extra={"free_mb": round(free / MB, 2), "needed_mb": round(needed / MB, 2)},
            )
            raise InsufficientStorage()

    def _check_open_room(self) -> None:
        needed = OPEN_FLOOR + load_bytes(self.path)
        if free_bytes(self.path) < needed:
            raise InsufficientStorage(
                f"The disk holding the vector store lacks the {needed / MB:.0f} MB it needs to "
                "open the store: free some space, then retry."
            )

    async def reserve(self, write_bytes: int) -> None:
        """Refuse (507) a write of about `write_bytes` now, before any part of it is made."""
        self.check_room(write_bytes)

    def _config(self, qe: Any) -> Any:
        return qe.EdgeConfig(
            vectors={},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            optimizers=qe.EdgeOptimizersConfig(
                deleted_threshold=DELETED_THRESHOLD, vacuum_min_vector_number=VACUUM_MIN_POINTS
            ),
        )

    def _open(self) -> qe.EdgeShard:
        import qdrant_edge as qe

        self.lock.acquire()  # before anything in the folder is opened or created
        try:
            self._check_open_room()
            if not (Path(self.path) / "edge_config.json").exists():
                Path(self.path).mkdir(parents=True, exist_ok=True)
                qe.EdgeShard.create(self.path, self._config(qe)).close()
                # Its log was opened with Edge's 32 MB files and holds nothing yet: start it anew.
                shutil.rmtree(Path(self.path) / "wal")
            set_open_options(self.path)
            shard = qe.EdgeShard.load(self.path)
        except BaseException:
            self.lock.release()
            raise
        self._changed = read_dead(self.path)
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
                    self._heads.clear()
                    self._unflushed = False
        return self._shard

    async def engine(self) -> qe.EdgeShard:
        """The open Edge shard itself (opened on first use): for measuring the engine's own
        query time beside Docent's (bench/); Docent's code goes through the methods above."""
        return await self._get()

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
            self.check_room(0)
            await self._run(add_dense)
        self._dense_size = dense_size

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        import qdrant_edge as qe

        shard = await self._get()
        built = [qe.Point(p.id, _vectors(qe, p), p.payload) for p in points]
        size = points_bytes(points)
        batched = _BATCHED.get()

        def write() -> int:
            self.check_room(size)
            # Points that already exist are overwritten: their old versions are dead until a vacuum.
            replaced = len(shard.retrieve([p.id for p in points], False, False))
            shard.update(qe.UpdateOperation.upsert_points(built))
            self._flush_unless(batched, shard)
            return replaced

        await self._write(write)

    async def retrieve(self, ids: Sequence[str]) -> list[Hit]:
        shard = await self._get()
        records = await self._run(lambda: shard.retrieve(list(ids), True, False))
        return [Hit(str(r.id), 0.0, dict(r.payload or {})) for r in records]

    async def heads(self, document_ids: Sequence[str]) -> dict[str, str]:
        if not document_ids:
            return {}
        shard = await self._get()
        ids: list[qe.PointId] = [point_id(d, 0) for d in document_ids]
        records = await self._run(lambda: shard.retrieve(ids, HEAD_FIELDS, False))
        return head_hashes([r.payload for r in records])

    async def count(self, document_id: str, *, other_than_hash: str | None = None) -> int:
        import qdrant_edge as qe

        shard = await self._get()
        flt = _document_filter(qe, document_id, other_than_hash)
        return await self._run(lambda: shard.count(qe.CountRequest(exact=True, filter=flt)))

    async def versions(self, heads: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
        import qdrant_edge as qe

        shard = await self._get()

        def counts() -> list[tuple[int, int]]:
            # One worker-thread hop for the batch: the counts are cheap next to the hop.
            out = []
            for document_id, content_hash in heads:
                every = shard.count(
                    qe.CountRequest(exact=True, filter=_document_filter(qe, document_id, None))
                )
                flt = _document_filter(qe, document_id, content_hash)
                stale = shard.count(qe.CountRequest(exact=True, filter=flt))
                out.append((every - stale, stale))
            return out

        return await self._run(counts) if heads else []

    async def delete(self, document_id: str, *, other_than_hash: str | None = None) -> int:
        import qdrant_edge as qe

        shard = await self._get()
        flt = _document_filter(qe, document_id, other_than_hash)
        batched = _BATCHED.get()

        def remove() -> int:
            n = shard.count(qe.CountRequest(exact=True, filter=flt))
            if n:
                self.check_room(0)
                shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
                self._flush_unless(batched, shard)
            return n

        return await self._write(remove)

    def _flush_unless(self, batched: bool, shard: qe.EdgeShard) -> None:
        """After a write, in its worker thread: flush now, or mark it for its batch's end."""
        if batched:
            self._unflushed = True
        else:
            shard.flush()

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """The writes made inside (by this task and the tasks it starts) are flushed once, when
        it ends, even by an error; each is in the write-ahead log and searchable meanwhile."""
        token = _BATCHED.set(True)
        try:
            yield
        finally:
            _BATCHED.reset(token)
            await self._flush_batched()

    async def _flush_batched(self) -> None:
        async with self._write_lock:
            shard = self._shard
            if not self._unflushed or shard is None:
                return
            self._unflushed = False
            try:
                await self._run(shard.flush)
            except BaseException:
                self._unflushed = True
                raise

    async def _write(self, change: Callable[[], int]) -> int:
        """`change` (which returns how many points it overwrote or removed) under the write
        lock, then a vacuum if the dead points it left make one due."""
        async with self._write_lock:
            try:
                changed = await self._run(change)
            finally:
                self._heads.clear()
            await self._maybe_optimize(changed)
            return changed

    async def _maybe_optimize(self, changed: int) -> None:
        """Count dead points; past the threshold, vacuum them now if no answer is streaming, else
        once none is or VACUUM_WAIT_S have passed (caller holds the write lock)."""
        self._changed += changed
        if changed:  # off the loop: a rename can wait on a busy disk
            await self._run(write_dead, self.path, self._changed)
        if not await self._vacuum_due():
            return
        if self.quiet is None or self.quiet():
            await self._vacuum()
        elif self._waiting is None or self._waiting.done():
            self._waiting = asyncio.get_running_loop().create_task(self._vacuum_when_quiet())

    async def _vacuum(self) -> None:
        self._changed = 0
        await self._run(self._optimize)

    async def _vacuum_when_quiet(self) -> None:
        """Wait for no answer to be streaming (or the deadline), then vacuum if still due."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + VACUUM_WAIT_S
        # A poll, only while a vacuum waits: the store knows a predicate, not the streams.
        while self.quiet is not None and not self.quiet() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(QUIET_POLL_S)
        async with self._write_lock:
            try:
                if self._shard is not None and await self._vacuum_due():
                    await self._vacuum()
            except Exception as exc:  # upkeep: the next write that leaves dead points retries
                log.warning("vacuum failed: %s", type(exc).__name__)

    async def _vacuum_due(self) -> bool:
        if not self.optimize_after or self._changed < min(self.optimize_after, VACUUM_FLOOR):
            return False
        if self._changed < self.optimize_after:
            shard = self._shard
            live = 0 if shard is None else (await self._run(shard.info)).points_count
            if self._changed < DEAD_SHARE * live:
                return False
        return True

    def _optimize(self) -> bool:
        write_dead(self.path, 0)  # counted anew from here, whatever this vacuum does
        shard = self._shard
        if shard is None:
            return False
        # A vacuum rewrites segments beside the old ones: it needs up to the shard's size again.
        size = folder_bytes(Path(self.path) / "segments")
        if free_bytes(self.path) < self.required_bytes(size):
            log.warning("not optimising the vector store: the disk is too full")
            return False
        optimized = shard.optimize()
        self.optimizations += 1
        return optimized

    async def optimize(self) -> bool:
        """Vacuum dead points now; True if any segment was rewritten."""
        await self._get()
        async with self._write_lock:
            self._changed = 0
            return await self._run(self._optimize)

    async def search(self, query: Query) -> list[Hit]:
        shard = await self._get()
        return self._inline(self.query_shard, shard, query)

    async def search_current(self, query: Query) -> list[Hit]:
        shard = await self._get()

        def current(asked: Query) -> tuple[list[Hit], list[Hit]]:
            hits = self.query_shard(shard, asked)
            heads, missing = heads_among(hits)
            known = self._heads
            if unknown := [d for d in missing if d not in known]:
                ids: list[qe.PointId] = [point_id(d, 0) for d in unknown]
                found = head_hashes([r.payload for r in shard.retrieve(ids, HEAD_FIELDS, False)])
                if len(known) + len(unknown) > HEADS_KEPT:
                    known.clear()
                known.update((d, found.get(d)) for d in unknown)
            for document_id in missing:
                if (head := known.get(document_id)) is not None:
                    heads[document_id] = head
            return hits, current_hits(hits, heads)

        def run() -> list[Hit]:
            asked: Query | None = query
            kept: list[Hit] = []
            for _ in range(STALE_ROUNDS):
                if asked is None:
                    break
                hits, kept = current(asked)
                asked = search_again(asked, hits, kept)
            return kept

        return self._inline(run)

    def query_shard(self, shard: qe.EdgeShard, query: Query) -> list[Hit]:
        """The engine's hits for `query` on `shard` (blocking): BM25 alone in one request; or
        each arm's candidates (ids and scores), fused (`vectors.fuse`), then the winners'
        payloads."""
        import qdrant_edge as qe

        flt = _search_filter(qe, query.filter, query.stale)
        sparse = qe.SparseVector(query.sparse.indices, query.sparse.values)
        payload = qe.PayloadSelector.Exclude(UNSEARCHED_FIELDS)
        if query.dense is None or self._dense_size is None:
            request = qe.QueryRequest(
                limit=query.limit,
                query=qe.Query.Nearest(sparse, using=SPARSE),
                filter=flt,
                with_payload=payload,
            )
            return [
                Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in shard.query(request)
            ]
        depth = query.limit * PREFETCH_FACTOR

        def arm(nearest: qe.Query) -> list[tuple[str, float]]:
            request = qe.QueryRequest(limit=depth, query=nearest, filter=flt, with_payload=False)
            return [(str(p.id), float(p.score)) for p in shard.query(request)]

        # A question of stopwords alone has no BM25 terms: the dense arm answers by itself.
        bm25 = arm(qe.Query.Nearest(sparse, using=SPARSE)) if query.sparse.indices else []
        ranked = fuse(bm25, arm(qe.Query.Nearest(query.dense, using=DENSE)), query.limit)
        ids: list[qe.PointId] = [point for point, _ in ranked]
        records = shard.retrieve(ids, payload, False) if ids else []
        return in_order({str(r.id): dict(r.payload or {}) for r in records}, ranked, bm25)

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
        if self._shard is None:
            self._check_open_room()  # without touching the store's files
        await self.total()

    def disk(self) -> dict[str, Any]:
        """Free space on the store's disk against what a typical write (one batch) needs."""
        free = free_bytes(self.path)
        return {"free_mb": round(free / MB, 1), "ok": free >= self.required_bytes(TYPICAL_WRITE)}

    async def snapshot(self, destination: str) -> dict[str, Any]:
        """Archive the shard to `destination` (a .tar.gz), consistent: writes wait meanwhile."""
        import qdrant_edge as qe

        from docent import backup

        await self._get()
        async with self._write_lock:
            shard = self._shard
            assert shard is not None
            await self._run(shard.flush)
            points = await self._run(lambda: shard.count(qe.CountRequest(exact=True)))
            return await self._run(backup.archive, self.path, destination, points)

    async def restore(self, source: str) -> dict[str, Any]:
        """Replace the shard with the one archived in `source` (checked before the swap)."""
        from docent import backup

        async with self._open_lock, self._write_lock:
            if self._shard is not None:
                shard, self._shard = self._shard, None
                await self._run(shard.close)
            await self._run(self.lock.acquire)
            try:
                return await self._run(backup.unpack, source, self.path)
            finally:
                self._dense_size = None
                self._heads.clear()

    async def aclose(self) -> None:
        if self._waiting is not None:  # its count is on disk: a later write vacuums instead
            self._waiting.cancel()
            with suppress(asyncio.CancelledError):
                await self._waiting
            self._waiting = None
        if self._shard is not None:
            await self._flush_batched()  # a batch cut short by the close (a cancelled ingest)
            shard, self._shard = self._shard, None
            async with self._write_lock:
                await self._run(shard.close)
        self.lock.release()


def lock_path(path: str) -> Path:
    """The lock file of the shard at `path`: beside it, so the shard's folder holds only Edge's."""
    shard = Path(path)
    return shard.parent / f"{shard.name}.lock"


def dead_path(path: str) -> Path:
    """Where the shard at `path` keeps its count of dead points between processes, beside it.

    Edge does not report the points it holds dead. Counted in memory alone, a CLI re-ingest's
    dead points were forgotten when it exited: runs of a few changed documents each never
    reached a vacuum, and the shard grew without end."""
    shard = Path(path)
    return shard.parent / f"{shard.name}.dead"


def read_dead(path: str) -> int:
    """The dead points counted so far (0 when nothing was recorded or the record is unreadable:
    a vacuum then comes later, never wrongly)."""
    try:
        return max(0, int(dead_path(path).read_text()))
    except (OSError, ValueError):
        return 0


def write_dead(path: str, count: int) -> None:
    """Record the count (replaced whole, never half-written); a failure only delays a vacuum."""
    target = dead_path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        partial.write_text(str(count))
        os.replace(partial, target)
    except OSError as exc:
        log.warning("could not record the dead points: %s", type(exc).__name__)


def set_open_options(path: str) -> None:
    """Record Docent's WAL file size and search pool in the shard's config, which Edge reads
    when it opens the shard (a shard made before keeps its current 32 MB log file until that
    one is full)."""
    import json

    config_file = Path(path) / "edge_config.json"
    config = json.loads(config_file.read_text())
    wanted = {"wal_options": WAL_OPTIONS, "max_search_threads": SEARCH_THREADS}
    if all(config.get(key) == value for key, value in wanted.items()):
        return
    config |= wanted
    partial = config_file.with_name(config_file.name + ".partial")
    partial.write_text(json.dumps(config))
    os.replace(partial, config_file)


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


def _search_filter(qe: Any, flt: SearchFilter, stale: Sequence[tuple[str, str]] = ()) -> Any:
    must = []
    if flt.document_id is not None:
        must.append(qe.FieldCondition("document_id", match=qe.MatchValue(flt.document_id)))
    if flt.tags:
        must.append(qe.FieldCondition("tags", match=qe.MatchAny(list(flt.tags))))
    must_not = [
        qe.Filter(
            must=[
                qe.FieldCondition("document_id", match=qe.MatchValue(document_id)),
                qe.FieldCondition("content_hash", match=qe.MatchAny(hashes)),
            ]
        )
        for document_id, hashes in by_document(stale).items()
    ]
    return qe.Filter(must=must or None, must_not=must_not or None) if must or must_not else None
