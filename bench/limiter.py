"""The limiter section: the cost of one sliding-window check on each store (in-process, TCP Redis,
the Upstash REST gateway over Redis)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.figures import quantiles_ms
from bench.fixtures import settings_for
from bench.sizes import Sizes


async def bench_limiter(sizes: Sizes, work: Path) -> dict[str, Any]:
    from docent.config import RateRule
    from docent.limits import check
    from docent.services import Services
    from tests.support.harness import gateway_server, redis_server

    rule = RateRule.parse("100000000/60s")
    out: dict[str, Any] = {}
    with redis_server() as redis_url, gateway_server(redis_url) as gateway_url:
        from tests.support.harness import GATEWAY_TOKEN

        stores = {
            "memory": {},
            "redis": {"redis_url": redis_url},
            "upstash_gateway": {
                "upstash_redis_rest_url": gateway_url,
                "upstash_redis_rest_token": GATEWAY_TOKEN,
            },
        }
        for name, values in stores.items():
            services = Services(settings_for(work / f"limiter-{name}", **values))
            limiter = services.limiter
            for _ in range(20):  # connections, scripts loaded
                await check(limiter, "bench-warm", rule, 5.0)
            timings = []
            for number in range(sizes.limiter_calls):
                started = time.perf_counter()
                decision = await check(limiter, f"bench-{number % 50}", rule, 5.0)
                timings.append(time.perf_counter() - started)
                assert decision.allowed
            out[name] = {"check_ms": quantiles_ms(timings)}
            await services.aclose()
    return out
