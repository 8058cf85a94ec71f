"""Upstash Redis over REST (`UPSTASH_REDIS_REST_URL`, `UPSTASH_REDIS_REST_TOKEN`).

The limits use upstash-ratelimit's sliding window; the cache uses upstash-redis. Both clients
come with no HTTP timeout (a server that accepts and never answers hangs a call forever) and
retry a refused connection after 3 s: Docent turns the retries off and bounds every round trip
itself (`timeout_s`); the caller bounds every call besides (`docent.limits.check`).

Those bounds cancel calls in flight, and httpx's pool (httpcore 1.0.9, its latest) loses a
connection slot for good to each request cancelled while its new connection is being opened
(encode/httpcore#1093, open). Under a burst that outlives its bounds the slots run out and every
later call waits for one that never comes: limits, cache and insights all fail until the process
restarts. So upstash-redis posts through httpx2 instead, pydantic's fork of httpx (the openai SDK
runs on it), whose pool reclaims them (pydantic/httpx2#983). The client posts JSON and reads JSON
back, which httpx2's client does alike.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from docent.config import RateRule
from docent.limits import Decision, next_admission

if TYPE_CHECKING:
    from upstash_redis.asyncio import Redis


T = TypeVar("T")


def _client(url: str, token: str) -> Redis:
    import httpx2
    from upstash_redis.asyncio import Redis

    redis = Redis(url, token, rest_retries=0, rest_retry_interval=0, allow_telemetry=False)
    # httpx2 for httpx, as the module docstring says why; the library's own client has opened
    # nothing yet, and is replaced before its first call.
    redis._http._client = httpx2.AsyncClient(timeout=None)  # type: ignore[assignment]
    return redis


async def _within(timeout_s: float, call: Awaitable[T]) -> T:
    """One round trip, bounded: the library's HTTP client has no timeout and offers none."""
    async with asyncio.timeout(timeout_s):
        return await call


class _Upstash:
    """One Upstash database under a key prefix, every round trip bounded by `timeout_s`."""

    def __init__(self, url: str, token: str, *, prefix: str, timeout_s: float = 0.5) -> None:
        self._redis = _client(url, token)
        self._prefix = prefix
        self._timeout_s = timeout_s

    async def ping(self) -> None:
        await _within(self._timeout_s, self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.close()


class UpstashLimiter(_Upstash):
    """`Limiter` on Upstash through upstash-ratelimit's `SlidingWindow`."""

    def __init__(
        self, url: str, token: str, *, prefix: str = "docent:rl", timeout_s: float = 0.5
    ) -> None:
        super().__init__(url, token, prefix=prefix, timeout_s=timeout_s)
        self._limiters: dict[RateRule, Any] = {}

    async def hit(self, identifier: str, rule: RateRule) -> Decision:
        from upstash_ratelimit.asyncio import Ratelimit, SlidingWindow

        limiter = self._limiters.get(rule)
        if limiter is None:
            limiter = Ratelimit(
                redis=self._redis,
                limiter=SlidingWindow(max_requests=rule.limit, window=rule.window_s, unit="s"),
                prefix=f"{self._prefix}:{rule}",
            )
            self._limiters[rule] = limiter
        response = await _within(self._timeout_s, limiter.limit(identifier))
        reset_at = float(response.reset)
        if response.allowed:
            return Decision(True, rule.limit, int(response.remaining), reset_at)
        # Refused: read the two window counts (the library's keys) to say when it admits again.
        now_ms = int(time.time() * 1000)
        window_ms = rule.window_s * 1000
        window = round(reset_at * 1000) // window_ms - 1
        key = f"{self._prefix}:{rule}:{identifier}"
        current, previous = await _within(
            self._timeout_s, self._redis.mget(f"{key}:{window}", f"{key}:{window - 1}")
        )
        admitted_at = next_admission(int(previous or 0), int(current or 0), rule, now_ms)
        return Decision(False, rule.limit, 0, reset_at, admitted_at)


class UpstashStore(_Upstash):
    """`KeyValueStore` on Upstash; values travel as base64 text (the REST API carries text)."""

    def __init__(
        self, url: str, token: str, *, prefix: str = "docent:kv", timeout_s: float = 0.5
    ) -> None:
        super().__init__(url, token, prefix=prefix, timeout_s=timeout_s)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        names = [f"{self._prefix}:{k}" for k in keys]
        values = await _within(self._timeout_s, self._redis.mget(*names))
        return [base64.b64decode(v) if v is not None else None for v in values]

    async def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        if not items:
            return
        pipe = self._redis.pipeline()
        for key, value in items.items():
            pipe.set(f"{self._prefix}:{key}", base64.b64encode(value).decode(), ex=ttl_s or None)
        # One upload of the whole batch: bounded by its caller, as a batch takes longer.
        await pipe.exec()
