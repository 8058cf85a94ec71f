"""The composition root: which backend serves each concern, chosen from settings in one place.

Backends are created lazily on first use and then reused for the life of the process (a warm
Lambda container, a server worker); nothing here connects or downloads at import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypedDict

from docent.config import Settings, get_settings

if TYPE_CHECKING:
    from typing import Unpack

    from docent.embeddings import Embedder
    from docent.generation import Answerer
    from docent.ingest import Ingestor
    from docent.insights import InsightsStore
    from docent.kv import KeyValueStore
    from docent.limits import Limiter
    from docent.vectors import VectorStore

log = logging.getLogger("docent.services")


def _qdrant(services: Services) -> VectorStore:
    from docent.qdrant import QdrantStore

    return QdrantStore.from_settings(services.settings)


def _edge(services: Services) -> VectorStore:
    from docent import sse
    from docent.edge import EdgeStore

    store = EdgeStore.from_settings(services.settings)
    store.quiet = sse.quiet  # a vacuum waits for the streams open in this process to end
    return store


def _shared(kind: str, backend: str) -> Callable[[Services], Any]:
    """The cache (`kind` "kv") or the limiter ("rl") on the shared store `backend`."""

    def build(services: Services) -> Any:
        s = services.settings
        prefix, timeout_s = f"{s.key_prefix}:{kind}", s.store_timeout_s
        if backend == "upstash":
            from docent import upstash

            url, token = s.upstash_redis_rest_url or "", s.upstash_redis_rest_token or ""
            if kind == "kv":
                return upstash.UpstashStore(url, token, prefix=prefix, timeout_s=timeout_s)
            return upstash.UpstashLimiter(url, token, prefix=prefix, timeout_s=timeout_s)
        from docent import redisstore

        if kind == "kv":
            return redisstore.RedisStore(s.redis_url or "", prefix=prefix, timeout_s=timeout_s)
        return redisstore.RedisLimiter(s.redis_url or "", prefix=prefix, timeout_s=timeout_s)

    return build


def _memory_kv(services: Services) -> KeyValueStore:
    from docent.kv import MemoryStore

    return MemoryStore()


def _memory_limiter(services: Services) -> Limiter:
    from docent.limits import MemoryLimiter

    return MemoryLimiter()


def _embedder(services: Services) -> Embedder | None:
    from docent.embeddings import create_embedder

    return create_embedder(services.settings, services.kv)


def _openai_answerer(services: Services) -> Answerer:
    from docent.llm import OpenAIAnswerer

    return OpenAIAnswerer(services.settings)


def _extractive(services: Services) -> Answerer:
    from docent.generation import ExtractiveAnswerer

    return ExtractiveAnswerer(pace_s=services.settings.extractive_pace_ms / 1000)


# Every backend, from the setting that chooses it: concern -> (choice, builder for each choice).
# The limiter and the cache share one store; the embedder caches in it.
BACKENDS: dict[str, tuple[Callable[[Settings], str], dict[str, Callable[[Services], Any]]]] = {
    "store": (
        lambda s: "qdrant" if s.qdrant_url else "edge",
        {"qdrant": _qdrant, "edge": _edge},
    ),
    "kv": (
        lambda s: s.store_backend,
        {
            "upstash": _shared("kv", "upstash"),
            "redis": _shared("kv", "redis"),
            "memory": _memory_kv,
        },
    ),
    "limiter": (
        lambda s: s.store_backend,
        {
            "upstash": _shared("rl", "upstash"),
            "redis": _shared("rl", "redis"),
            "memory": _memory_limiter,
        },
    ),
    "embedder": (
        lambda s: s.embeddings,
        {"openai": _embedder, "local": _embedder, "none": lambda services: None},
    ),
    "answerer": (
        lambda s: "openai" if s.llm_configured else "extractive",
        {"openai": _openai_answerer, "extractive": _extractive},
    ),
}


class Given(TypedDict, total=False):
    """The backends a caller may hand to `Services` instead of having them built (None: build)."""

    store: VectorStore | None
    kv: KeyValueStore | None
    limiter: Limiter | None
    embedder: Embedder | None
    answerer: Answerer | None


class Services:
    """The process's backends; each built on first use from `BACKENDS`, unless given here.

    Tests pass the backends they replace (`Services(settings, answerer=...)`): the only seam.
    """

    def __init__(self, settings: Settings, **given: Unpack[Given]) -> None:
        self.settings = settings
        unknown = given.keys() - Given.__annotations__.keys()
        if unknown:
            raise TypeError(f"Services() takes no backend named {', '.join(sorted(unknown))}")
        chosen = {name: value for name, value in given.items() if value is not None}
        self._given = frozenset(chosen)
        # cached_property reads the instance's dict first: a given backend is never built.
        self.__dict__.update(chosen)

    def _build(self, concern: str) -> Any:
        choose, builders = BACKENDS[concern]
        return builders[choose(self.settings)](self)

    @cached_property
    def store(self) -> VectorStore:
        return self._build("store")  # type: ignore[no-any-return]

    @cached_property
    def kv(self) -> KeyValueStore:
        return self._build("kv")  # type: ignore[no-any-return]

    @cached_property
    def limiter(self) -> Limiter:
        return self._build("limiter")  # type: ignore[no-any-return]

    @cached_property
    def insights(self) -> InsightsStore:
        from docent.insights import create_insights

        return create_insights(self.settings)

    @cached_property
    def embedder(self) -> Embedder | None:
        return self._build("embedder")  # type: ignore[no-any-return]

    @cached_property
    def answerer(self) -> Answerer:
        return self._build("answerer")  # type: ignore[no-any-return]

    @property
    def token_model(self) -> str | None:
        """The model whose encoding counts tokens: the chat model when one answers."""
        return self.settings.token_model

    @cached_property
    def ingestor(self) -> Ingestor:
        from docent.ingest import Ingestor

        return Ingestor(
            self.store,
            self.embedder,
            chunk_tokens=self.settings.chunk_tokens,
            overlap_tokens=self.settings.chunk_overlap_tokens,
            model=self.token_model,
        )

    async def aclose(self) -> None:
        """Release connections and the store's lock (server shutdown, tests); and the model
        clients of this loop, which the answerer and the embedder share."""
        from docent import modelclient

        for name in CLOSABLE:
            await _close(self.__dict__.get(name))
        await modelclient.aclose_clients()

    async def reconnect(self) -> None:
        """Close every backend built here and forget it, so the next use builds it anew with
        new connection pools (SnapStart: restored copies must not share the snapshot's sockets).

        Backends given to the constructor are the caller's: left open and kept.
        """
        for name in (*CLOSABLE, "ingestor"):
            if name in self._given:
                continue
            backend = self.__dict__.pop(name, None)
            try:
                await _close(backend)
            except Exception as exc:  # a closed or broken pool: it is dropped either way
                log.warning("closing the %s failed: %s", name, type(exc).__name__)


# What `aclose` and `reconnect` close: everything that may hold a connection or a file lock.
CLOSABLE = ("store", "kv", "limiter", "embedder", "answerer", "insights")


async def _close(backend: object) -> None:
    closer = getattr(backend, "aclose", None)
    if closer is not None:
        await closer()


_services: Services | None = None


def get_services() -> Services:
    """The process's services, built lazily from the process's settings (`get_settings`): the
    same instance for as long as those settings stand (a Lambda container's life, a server's)."""
    global _services
    settings = get_settings()
    if _services is None or _services.settings is not settings:
        _services = Services(settings)
    return _services
