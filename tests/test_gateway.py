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


# One call per command family through the real sync client. Redis answers these in RESP2 shapes
# (scores as strings), as Upstash's REST API does; the client parses them into its own types.
_FAMILIES = {
    "strings": lambda r: (
        r.set("f:s", "v"),
        r.append("f:s", "w"),
        r.getrange("f:s", 0, 0),
        r.incrbyfloat("f:fl", 1.5),
        r.strlen("f:s"),
    ),
    "hashes": lambda r: (
        r.hset("f:h", values={"a": "1", "b": "2"}),
        r.hgetall("f:h"),
        r.hincrbyfloat("f:h", "a", 0.5),
        sorted(r.hrandfield("f:h", 2, withvalues=True).items()),
    ),
    "lists": lambda r: (r.rpush("f:l", "a", "b", "c"), r.lpos("f:l", "b"), r.lrange("f:l", 0, -1)),
    "sets": lambda r: (r.sadd("f:set", "a", "b"), sorted(r.smembers("f:set")), r.scard("f:set")),
    "sorted sets": lambda r: (
        r.zadd("f:z", {"a": 1, "b": 2.5}),
        r.zadd("f:z", {"a": 1}, incr=True),
        r.zincrby("f:z", 2, "b"),
        r.zrange("f:z", 0, -1, withscores=True),
        r.zrangebyscore("f:z", 0, 10, withscores=True),
        r.zrevrange("f:z", 0, -1, withscores=True),
        r.zmscore("f:z", ["a", "b"]),
        sorted(r.zrandmember("f:z", 2, withscores=True)),
        r.zunion(["f:z", "f:z"], withscores=True),
        r.zinter(["f:z", "f:z"], withscores=True),
        r.zdiff(["f:z", "f:none"], withscores=True),
        r.zunionstore("f:zu", ["f:z", "f:z"]),
        r.zrange("f:zu", 0, -1, withscores=True),
        r.zpopmin("f:z", 1),
        r.zpopmax("f:z", 1),
    ),
    "geo": lambda r: (
        r.geoadd("f:g", (13.361389, 38.115556, "a"), (15.087269, 37.502669, "b")),
        round(r.geodist("f:g", "a", "b", "km") or 0),
        r.geosearch("f:g", longitude=15, latitude=37, radius=200, unit="KM"),
    ),
    "streams": lambda r: (r.xadd("f:x", "1-1", {"k": "v"}), r.xrange("f:x"), r.xlen("f:x")),
    "hyperloglog": lambda r: (r.pfadd("f:p", "a", "b", "a"), r.pfcount("f:p")),
    "bitmaps": lambda r: (r.setbit("f:b", 7, 1), r.getbit("f:b", 7), r.bitcount("f:b")),
    "keys": lambda r: (
        r.set("f:k", "v"),
        r.expire("f:k", 60),
        r.ttl("f:k"),
        r.type("f:k"),
        r.exists("f:k", "f:no"),
    ),
}

_EXPECTED = {
    "strings": (True, 2, "v", 1.5, 2),
    "hashes": (2, {"a": "1", "b": "2"}, 1.5, [("a", "1.5"), ("b", "2")]),
    "lists": (3, 1, ["a", "b", "c"]),
    "sets": (2, ["a", "b"], 2),
    "sorted sets": (
        2,
        2.0,
        4.5,
        [("a", 2.0), ("b", 4.5)],
        [("a", 2.0), ("b", 4.5)],
        [("b", 4.5), ("a", 2.0)],
        [2.0, 4.5],
        [("a", 2.0), ("b", 4.5)],
        [("a", 4.0), ("b", 9.0)],
        [("a", 4.0), ("b", 9.0)],
        [("a", 2.0), ("b", 4.5)],
        2,
        [("a", 4.0), ("b", 9.0)],
        [("a", 2.0)],
        [("b", 4.5)],
    ),
    "geo": (2, 166, ["a", "b"]),
    "streams": ("1-1", [["1-1", ["k", "v"]]], 1),
    "hyperloglog": (1, 2),
    "bitmaps": (0, 1, 1),
    "keys": (True, True, 60, "string", 1),
}


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_upstash_client_parses_every_command_family(gateway_url: str, family: str) -> None:
    from upstash_redis import Redis

    redis = Redis(gateway_url, GATEWAY_TOKEN, allow_telemetry=False)
    for key in redis.keys("f:*"):
        redis.delete(key)
    assert _FAMILIES[family](redis) == _EXPECTED[family]
