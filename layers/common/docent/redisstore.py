"""TCP Redis (`REDIS_URL`) for the rate limits and the embedding cache.

The limiter runs upstash-ratelimit's own sliding-window Lua script (its Upstash-only shebang
dropped), so a TCP Redis, Upstash and the in-process store admit exactly the same requests.
Connections have short timeouts and no retries: the caller bounds every call and applies the
fail-open/closed policy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from docent.config import RateRule
from docent.limits import Decision, next_admission

if TYPE_CHECKING:
    import redis.asyncio as aioredis


@cache
def sliding_window_script() -> str:
    """upstash-ratelimit's sliding-window script, as open-source Redis accepts it."""
    from upstash_ratelimit.limiter import SlidingWindow

    # Upstash-only first line `#!lua flags=...` (as docent.gateway.strip_shebang, which is a
    # development tool and not in the Lambda layer).
    script = SlidingWindow.SCRIPT
    return script.split("\n", 1)[1] if script.startswith("#!lua") else script


def client(url: str, timeout_s: float, *, max_connections: int = 100) -> aioredis.Redis:
    """A Redis client whose calls are bounded by `timeout_s` and never retried.

    A burst beyond the pool's connections waits (within the same bound) for a free one.
    redis-py's default pool refuses the 101st concurrent call at once (MaxConnectionsError),
    which would admit a chat request unchecked (the limiter fails open) or lose a rating.
    """
    import redis.asyncio as aioredis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )
    return aioredis.Redis.from_pool(pool)


class RedisLimiter:
    """`Limiter` on a TCP Redis."""

    def __init__(self, url: str, *, prefix: str = "docent:rl", timeout_s: float = 0.5) -> None:
        self._redis = client(url, timeout_s)
        self._prefix = prefix
        self._script: Any = None

    async def hit(self, identifier: str, rule: RateRule, now: float | None = None) -> Decision:
        if self._script is None:
            self._script = self._redis.register_script(sliding_window_script())
        now_ms = int((time.time() if now is None else now) * 1000)
        window_ms = rule.window_s * 1000
        window = now_ms // window_ms
        key = f"{self._prefix}:{identifier}:{rule}"
        remaining = int(
            await self._script(
                keys=[f"{key}:{window}", f"{key}:{window - 1}"],
                args=[rule.limit, now_ms, window_ms, 1],
            )
        )
        reset_at = (window + 1) * window_ms / 1000
        if remaining >= 0:
            return Decision(True, rule.limit, remaining, reset_at)
        # Refused: the script says only that; the two counts say when the caller gets back in.
        current, previous = await self._redis.mget([f"{key}:{window}", f"{key}:{window - 1}"])
        admitted_at = next_admission(int(previous or 0), int(current or 0), rule, now_ms)
        return Decision(False, rule.limit, 0, reset_at, admitted_at)

    async def ping(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()


class RedisStore:
    """`KeyValueStore` on a TCP Redis: MGET, and SET EX in one pipeline."""

    def __init__(self, url: str, *, prefix: str = "docent:kv", timeout_s: float = 0.5) -> None:
        self._redis = client(url, timeout_s)
        self._prefix = prefix

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._redis.mget([f"{self._prefix}:{k}" for k in keys])
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        if not items:
            return
        pipe = self._redis.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set(f"{self._prefix}:{key}", value, ex=ttl_s or None)
        await pipe.execute()

    async def ping(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()
