"""The test harness's public part: what the benchmarks (bench/) run Docent with.

The benchmarks measure the same real servers and stand-ins the tests use; they import them from
here only (tests/test_imports.py checks), so the rest of tests/support can change freely.
"""

from __future__ import annotations

from tests.support.lambdaruntime import python313
from tests.support.sam import sam_build
from tests.support.servers import (
    GATEWAY_TOKEN,
    background_process,
    docent_server,
    free_port,
    gateway_server,
    redis_server,
)
from tests.support.standins import StandIn, hashed_vector

__all__ = [
    "GATEWAY_TOKEN",
    "StandIn",
    "background_process",
    "docent_server",
    "free_port",
    "gateway_server",
    "hashed_vector",
    "python313",
    "redis_server",
    "sam_build",
]
