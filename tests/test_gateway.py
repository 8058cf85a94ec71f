"""The real upstash-redis and upstash-ratelimit clients, through the gateway, over a real Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.servers import GATEWAY_TOKEN

pytestmark = pytest.mark.services


async def test_async_client_commands_pipeline_and_transaction(gateway_url: str) -> None:
    from upstash_redis.asyncio import Redis

    redis = Redis(gateway_url, GATEWAY_TOKEN, allow_telemetry=False)
    try:
        assert await redis.set("gw:a", "héllo wörld ✓") is True
        assert await redis.get("gw:a") == "héllo wörld ✓"
        assert await redis.incr("gw:n") >= 1
        assert await redis.mget("gw:a", "gw:missing") == ["héllo wörld ✓", None]
        pipe = redis.pipeline()
        pipe.set("gw:b", "1")
        pipe.incr("gw:b")
        pipe.get("gw:b")
        assert await pipe.exec() == [True, 2, "2"]
        tx = redis.multi()
        tx.set("gw:c", "x", ex=60)
        tx.ttl("gw:c")
        assert await tx.exec() == [True, 60]
    finally:
        await redis.close()


def test_sync_client_and_lua_with_the_upstash_shebang(gateway_url: str) -> None:
    from upstash_redis import Redis

    redis = Redis(gateway_url, GATEWAY_TOKEN, allow_telemetry=False)
    script = '#!lua flags=allow-key-locking\nreturn redis.call("SET", KEYS[1], ARGV[1])'
    assert redis.eval(script, keys=["gw:lua"], args=["v"]) == "OK"
    sha = redis.script_load(script)
    assert redis.evalsha(sha, keys=["gw:lua2"], args=["w"]) == "OK"
    assert redis.get("gw:lua2") == "w"


def test_bad_token_and_bad_command_are_errors(gateway_url: str) -> None:
    denied = httpx.post(gateway_url, json=["PING"], headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 401
    wrong = httpx.post(
        gateway_url, json=["NOSUCHCOMMAND"], headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}
    )
    assert wrong.status_code == 400 and "unknown command" in wrong.json()["error"].lower()


async def test_upstash_ratelimit_admits_exactly_the_limit(gateway_url: str) -> None:
    from upstash_ratelimit.asyncio import Ratelimit, SlidingWindow
    from upstash_redis.asyncio import Redis

    redis = Redis(gateway_url, GATEWAY_TOKEN, allow_telemetry=False)
    limiter = Ratelimit(redis, SlidingWindow(max_requests=10, window=60), prefix="gw-test")
    try:
        results = await asyncio.gather(*(limiter.limit("client") for _ in range(30)))
    finally:
        await redis.close()
    assert sum(r.allowed for r in results) == 10
