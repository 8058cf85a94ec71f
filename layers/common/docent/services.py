"""The composition root: which backend serves each concern, chosen from settings in one place.

Backends are created lazily on first use and then reused for the life of the process (a warm
Lambda container, a server worker); nothing here connects or downloads at import.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from docent.config import Settings, get_settings
from docent.generation import Answerer, ExtractiveAnswerer

if TYPE_CHECKING:
    from docent.embeddings import Embedder
    from docent.ingest import Ingestor
    from docent.insights import InsightsStore
    from docent.kv import KeyValueStore
    from docent.limits import Limiter
    from docent.vectors import VectorStore


class Services:
    """The process's backends; each built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> VectorStore:
        from docent.vectors import create_store

        return create_store(self.settings)

    @cached_property
    def kv(self) -> KeyValueStore:
        backend = self.settings.store_backend
        if backend == "upstash":
            from docent.upstash import UpstashStore

            return UpstashStore(
                self.settings.upstash_redis_rest_url or "",
                self.settings.upstash_redis_rest_token or "",
                prefix=f"{self.settings.key_prefix}:kv",
                timeout_s=self.settings.store_timeout_s,
            )
        if backend == "redis":
            from docent.redisstore import RedisStore

            return RedisStore(
                self.settings.redis_url or "",
                prefix=f"{self.settings.key_prefix}:kv",
                timeout_s=self.settings.store_timeout_s,
            )
        from docent.kv import MemoryStore

        return MemoryStore()

    @cached_property
    def limiter(self) -> Limiter:
        backend = self.settings.store_backend
        if backend == "upstash":
            from docent.upstash import UpstashLimiter

            return UpstashLimiter(
                self.settings.upstash_redis_rest_url or "",
                self.settings.upstash_redis_rest_token or "",
                prefix=f"{self.settings.key_prefix}:rl",
                timeout_s=self.settings.store_timeout_s,
            )
        if backend == "redis":
            from docent.redisstore import RedisLimiter

            return RedisLimiter(
                self.settings.redis_url or "",
                prefix=f"{self.settings.key_prefix}:rl",
                timeout_s=self.settings.store_timeout_s,
            )
        from docent.limits import MemoryLimiter

        return MemoryLimiter()

    @cached_property
    def insights(self) -> InsightsStore:
        from docent.insights import create_insights

        return create_insights(self.settings)

    @cached_property
    def embedder(self) -> Embedder | None:
        if self.settings.embeddings == "none":
            return None
        from docent.embeddings import create_embedder

        return create_embedder(self.settings, self.kv)

    @cached_property
    def answerer(self) -> Answerer:
        if not self.settings.llm_configured:
            return ExtractiveAnswerer(pace_s=self.settings.extractive_pace_ms / 1000)
        from docent.llm import OpenAIAnswerer

        return OpenAIAnswerer(self.settings)

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
        """Release connections and the store's lock (server shutdown, tests)."""
        for name in ("store", "kv", "limiter", "embedder", "answerer", "insights"):
            backend = self.__dict__.get(name)
            closer = getattr(backend, "aclose", None) or getattr(backend, "close", None)
            if closer is not None:
                await closer()


_services: Services | None = None


def get_services() -> Services:
    """The process-wide services, created on first call."""
    global _services
    if _services is None:
        _services = Services(get_settings())
    return _services


def reset_services(services: Services | None = None) -> None:
    """Replace the process-wide services (tests, `docent serve` on a new configuration)."""
    global _services
    _services = services
