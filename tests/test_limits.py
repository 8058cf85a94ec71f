"""The sliding window on every store: same decisions, exact under concurrency, bounded on faults."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from docent.config import RateRule
from docent.limits import Decision, Limiter, LimiterUnavailable, MemoryLimiter, check
from docent.redisstore import RedisLimiter, RedisStore
from docent.upstash import UpstashLimiter, UpstashStore
from tests.support.servers import GATEWAY_TOKEN, free_port, silent_server
from tests.support.windows import clear_of_window_roll


def test_memory_window_weights_the_previous_window() -> None:
    now = [60.0 * 16_667]  # exactly a window boundary for 60 s windows
    limiter = MemoryLimiter(clock=lambda: now[0])
    rule = RateRule(10, 60)

    async def hits(n: int) -> list[Decision]:
        return [await limiter.hit("x", rule) for _ in range(n)]

    first = asyncio.run(hits(12))
    assert [d.allowed for d in first] == [True] * 10 + [False] * 2
    assert [d.remaining for d in first[:3]] == [9, 8, 7]
    now[0] += 60 * 1.25  # a quarter into the next window: 75% of 10 still counts
    later = asyncio.run(hits(4))
    assert [d.allowed for d in later] == [True, True, True, False]
    # Refused at the window's start: the window rolls 60 s later, and Retry-After says so.
    assert first[-1].reset_at == 60.0 * 16_667 + 60
    assert first[-1].retry_after(now=60.0 * 16_667) == 60
    assert first[-1].retry_after(now=60.0 * 16_667 + 59.5) == 1


@pytest.fixture(params=["memory", "redis", "upstash"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter()
        return
    if request.param == "redis":
        # 100 hits at once open up to 100 connections: the production bound (0.5 s) is for a
        # warm pool; a burst of fresh connects on a busy machine can take longer. This test is
        # about exact counts; the bounded wait has its own tests (fail open/closed).
        backend: RedisLimiter | UpstashLimiter = RedisLimiter(
            request.getfixturevalue("redis_url"), prefix=f"t{uuid.uuid4().hex}", timeout_s=5
        )
    else:
        backend = UpstashLimiter(
            request.getfixturevalue("gateway_url"),
            GATEWAY_TOKEN,
            prefix=f"t{uuid.uuid4().hex}",
            timeout_s=5,
        )
    yield backend
    await backend.aclose()


@pytest.mark.services
async def test_every_store_admits_exactly_the_limit_under_concurrency(limiter: Limiter) -> None:
    rule = RateRule(10, 3600)
    clear_of_window_roll(3600, margin_s=10)
    decisions = await asyncio.gather(*(limiter.hit("client", rule) for _ in range(100)))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    assert sorted(d.remaining for d in allowed) == list(range(10))
    refused = [d for d in decisions if not d.allowed]
    assert all(d.remaining == 0 and d.retry_after() >= 1 for d in refused)
    assert len({round(d.reset_at) for d in decisions}) == 1


@pytest.mark.services
async def test_stores_agree_decision_by_decision(redis_url: str, gateway_url: str) -> None:
    prefix = f"c{uuid.uuid4().hex}"
    stores: list[Limiter] = [
        MemoryLimiter(),
        RedisLimiter(redis_url, prefix=prefix),
        UpstashLimiter(gateway_url, GATEWAY_TOKEN, prefix=prefix + "u"),
    ]
    rule = RateRule(5, 3600)
    clear_of_window_roll(3600, margin_s=10)
    sequences = []
    for store in stores:
        sequences.append(
            [(d.allowed, d.remaining) for d in [await store.hit("a", rule) for _ in range(7)]]
        )
    for store in stores[1:]:
        await store.aclose()  # type: ignore[attr-defined]
    assert sequences[0] == sequences[1] == sequences[2]
    assert sequences[0] == [
        (True, 4),
        (True, 3),
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
        (False, 0),
    ]


@pytest.mark.services
async def test_redis_window_boundary_matches_memory(redis_url: str) -> None:
    rule = RateRule(4, 10)
    start = (time.time() // 10 + 1) * 10  # a window boundary
    redis = RedisLimiter(redis_url, prefix=f"b{uuid.uuid4().hex}")
    memory_now = [start]
    memory = MemoryLimiter(clock=lambda: memory_now[0])
    moments = [start + t for t in (0.1, 0.2, 0.3, 0.4, 5.0, 10.1, 10.2, 12.5, 15.0, 15.1)]
    got_redis, got_memory = [], []
    for moment in moments:
        memory_now[0] = moment
        got_memory.append((await memory.hit("k", rule)).allowed)
        got_redis.append((await redis.hit("k", rule, now=moment)).allowed)
    await redis.aclose()
    assert got_redis == got_memory
    # 4 fill window 0; at 10.1 s, 99% of those 4 still weigh floor(3.96) = 3, so one more fits;
    # at 15.0 s only floor(0.5 * 4) = 2 weigh and at 15.1 s floor(0.49 * 4) = 1.
    assert got_memory == [True, True, True, True, False, True, False, False, True, True]


@pytest.mark.services
async def test_a_burst_beyond_the_redis_pool_waits_and_is_counted_exactly(redis_url: str) -> None:
    # 250 checks at once on a 100-connection pool: redis-py's default pool would refuse the
    # 101st with MaxConnectionsError, and chat would admit it unchecked (fail open).
    redis = RedisLimiter(redis_url, prefix=f"p{uuid.uuid4().hex}", timeout_s=5)
    rule = RateRule(120, 3600)
    clear_of_window_roll(3600, margin_s=10)
    decisions = await asyncio.gather(
        *(check(redis, "burst", rule, timeout_s=10) for _ in range(250))
    )
    await redis.aclose()
    assert sum(d.allowed for d in decisions) == 120
    assert sum(not d.allowed for d in decisions) == 130


@pytest.mark.parametrize("kind", ["redis", "upstash"])
async def test_a_hung_store_is_a_decision_within_the_timeout(kind: str) -> None:
    with silent_server() as address:
        backend: RedisLimiter | UpstashLimiter = (
            RedisLimiter(f"redis://{address}/0", timeout_s=5)
            if kind == "redis"
            else UpstashLimiter(f"http://{address}", "t", timeout_s=5)
        )
        started = time.monotonic()
        with pytest.raises(LimiterUnavailable):
            await check(backend, "x", RateRule(1, 60), timeout_s=0.5)
        elapsed = time.monotonic() - started
        await backend.aclose()
    assert elapsed < 1.0


@pytest.mark.parametrize("kind", ["redis", "upstash"])
async def test_a_closed_port_is_a_decision_within_the_timeout(kind: str) -> None:
    port = free_port()  # nothing listens there
    backend: RedisLimiter | UpstashLimiter = (
        RedisLimiter(f"redis://127.0.0.1:{port}/0")
        if kind == "redis"
        else UpstashLimiter(f"http://127.0.0.1:{port}", "t")
    )
    started = time.monotonic()
    with pytest.raises(LimiterUnavailable):
        await check(backend, "x", RateRule(1, 60), timeout_s=0.5)
    assert time.monotonic() - started < 1.0
    await backend.aclose()


@pytest.mark.services
@pytest.mark.parametrize("kind", ["redis", "upstash"])
async def test_stores_round_trip_bytes_with_expiry(
    kind: str, request: pytest.FixtureRequest
) -> None:
    prefix = f"kv{uuid.uuid4().hex}"
    store: RedisStore | UpstashStore = (
        RedisStore(request.getfixturevalue("redis_url"), prefix=prefix)
        if kind == "redis"
        else UpstashStore(request.getfixturevalue("gateway_url"), GATEWAY_TOKEN, prefix=prefix)
    )
    blob = bytes(range(256))
    await store.set_many({"a": blob, "b": b"\x00"}, ttl_s=1)
    await store.set_many({"c": b"kept"}, ttl_s=0)
    assert await store.get_many(["a", "b", "missing", "c"]) == [blob, b"\x00", None, b"kept"]
    await asyncio.sleep(1.2)
    assert await store.get_many(["a", "c"]) == [None, b"kept"]
    await store.ping()
    await store.aclose()


async def test_the_memory_store_is_bounded_by_bytes_least_recently_used_first() -> None:
    from docent.kv import MemoryStore

    now = [0.0]
    store = MemoryStore(max_items=100, max_bytes=1000, clock=lambda: now[0])
    await store.set_many({"a": b"a" * 300, "b": b"b" * 300, "c": b"c" * 300}, ttl_s=0)
    assert await store.get_many(["a"]) == [b"a" * 300]  # a is now the most recent
    await store.set_many({"d": b"d" * 300}, ttl_s=0)  # 1200 bytes: the oldest (b) goes
    assert await store.get_many(["a", "b", "c", "d"]) == [b"a" * 300, None, b"c" * 300, b"d" * 300]
    assert store.size_bytes == 900
    await store.set_many({"c": b"c" * 10}, ttl_s=5)  # replacing counts the new size only
    assert store.size_bytes == 610
    now[0] = 10.0
    assert await store.get_many(["c"]) == [None]  # expired, and its bytes released
    assert store.size_bytes == 600
    await store.set_many({"huge": b"x" * 5000}, ttl_s=0)  # larger than the cache: not kept
    assert await store.get_many(["huge", "a"]) == [None, b"a" * 300]


def test_retry_after_is_when_the_fading_previous_window_admits_again() -> None:
    """Refused early in a window because of the previous one: back in as soon as its weight
    has faded enough, not when the current window ends."""
    boundary = 60.0 * 16_667
    now = [boundary - 1]
    limiter = MemoryLimiter(clock=lambda: now[0])
    rule = RateRule(10, 60)

    async def hit() -> Decision:
        return await limiter.hit("x", rule)

    for _ in range(10):
        assert asyncio.run(hit()).allowed
    now[0] = boundary + 1  # 9 of the previous 10 still count: one more fits
    assert asyncio.run(hit()).allowed
    refused = asyncio.run(hit())
    # floor((1 - e) * 10) + 1 < 10 once e > 0.1: at 6 s, not at the window's end (60 s).
    assert not refused.allowed
    assert refused.admitted_at == boundary + 6
    assert refused.retry_after(now=boundary + 1) == 5
    assert refused.headers()["X-RateLimit-Reset"] == str(int(boundary + 60))
    now[0] = boundary + 5.9
    assert not asyncio.run(hit()).allowed
    now[0] = boundary + 6.01
    assert asyncio.run(hit()).allowed


@pytest.mark.services
async def test_every_store_says_when_it_admits_again(limiter: Limiter) -> None:
    """Real time, each store: Retry-After points at the admission, not at the window's end."""
    rule = RateRule(10, 6)
    boundary = (int(time.time() / 6) + 1) * 6.0
    if boundary - time.time() < 2.5:
        boundary += 6
    await asyncio.sleep(boundary - 2 - time.time())
    assert all([(await limiter.hit("c", rule)).allowed for _ in range(10)])
    await asyncio.sleep(boundary + 0.02 - time.time())
    assert (await limiter.hit("c", rule)).allowed  # 9 of the previous 10 still count
    refused = await limiter.hit("c", rule)
    refused_at = time.time()

    assert not refused.allowed
    assert refused.admitted_at == pytest.approx(boundary + 0.6, abs=0.01)  # e > 0.1
    assert refused.retry_after(now=refused_at) == 1  # the window's end is 6 s away
    assert refused.reset_at == boundary + 6
    await asyncio.sleep(boundary + 0.65 - time.time())
    assert (await limiter.hit("c", rule)).allowed


@pytest.mark.services
async def test_bursts_cut_off_by_their_bounds_leave_the_upstash_client_whole(
    gateway_url: str,
) -> None:
    """Calls cut off by Docent's bounds while their connections open must not use up the pool:
    with upstash-redis's own httpx client (httpcore 1.0.9) each such call lost a slot for good
    (encode/httpcore#1093), and after these bursts every call waited for a slot that never came,
    so limits, cache and insights all failed until a restart (seen under a load test's burst)."""
    limiter = UpstashLimiter(gateway_url, GATEWAY_TOKEN, prefix=f"w{uuid.uuid4().hex}", timeout_s=5)
    store = UpstashStore(gateway_url, GATEWAY_TOKEN, prefix=f"w{uuid.uuid4().hex}", timeout_s=5)

    async def cut_off(call: Any) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):  # as `limits.check` and the insights bound do
                await call

    try:
        for _ in range(12):
            await asyncio.gather(
                *(cut_off(store.get_many([f"k{i}"])) for i in range(150)),
                *(cut_off(limiter.hit(f"v{i}", RateRule(10, 60))) for i in range(150)),
            )
        async with asyncio.timeout(5):
            assert await store.get_many(["k1"]) == [None]
            assert (await limiter.hit("after", RateRule(10, 60))).allowed
    finally:
        await limiter.aclose()
        await store.aclose()


def test_the_tests_window_guard_sleeps_past_a_near_roll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard the rate-limit tests start with: one request just before a roll and one just
    after are both admitted under a limit of 1 (the previous window weighs floor(0.99) = 0)."""
    now = [7200.0 - 5]  # 5 s before an hour's roll
    slept: list[float] = []
    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(time, "sleep", slept.append)
    assert clear_of_window_roll(3600, margin_s=30) == pytest.approx(5.05)
    assert slept == [pytest.approx(5.05)]
    now[0] = 7200.0 + 100  # well inside a window: no wait
    assert clear_of_window_roll(3600, margin_s=30) == 0.0

    limiter = MemoryLimiter(clock=lambda: now[0])
    rule = RateRule(1, 3600)
    now[0] = 7200.0 - 0.5
    first = asyncio.run(limiter.hit("k", rule)).allowed
    now[0] = 7200.0 + 0.5
    assert (first, asyncio.run(limiter.hit("k", rule)).allowed) == (True, True)
