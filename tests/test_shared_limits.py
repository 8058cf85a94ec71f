"""Limits shared across processes through a real store, and the policy when the store fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY, running_docent
from tests.support.servers import GATEWAY_TOKEN, docent_process, free_port, silent_server
from tests.support.windows import clear_of_window_roll


@pytest.mark.services
@pytest.mark.parametrize("backend", ["upstash", "redis"])
async def test_two_processes_sharing_the_store_admit_exactly_the_limit(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "upstash":
        env = {
            "UPSTASH_REDIS_REST_URL": request.getfixturevalue("gateway_url"),
            "UPSTASH_REDIS_REST_TOKEN": GATEWAY_TOKEN,
        }
    else:
        env = {"REDIS_URL": request.getfixturevalue("redis_url")}
    # A per-test prefix keeps the windows of the two parametrisations apart in the one Redis.
    # The store timeout is raised from 0.5 s: a burst of 100 first requests opens 100 fresh
    # connections to the one-process dev gateway, and a timed-out check would be admitted
    # (chat fails open), which is the policy under test elsewhere, not the window.
    env |= {
        "RATE_LIMIT_ANON": "10/3600s",
        "ADMIN_API_KEYS": ADMIN_KEY,
        "KEY_PREFIX": tmp_path.name,
        "STORE_TIMEOUT_S": "5",
    }
    clear_of_window_roll(3600)
    with (
        docent_process(env, str(tmp_path / "a")) as first,
        docent_process(env, str(tmp_path / "b")) as second,
    ):
        async with httpx.AsyncClient(timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{(first, second)[i % 2]}/chat",
                        json={"question": "what is docent?"},
                        # Rotating X-Forwarded-For must not buy more: no proxy is trusted.
                        headers={"X-Forwarded-For": f"203.0.113.{i}"},
                    )
                    for i in range(100)
                )
            )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 90
    for refused in (r for r in responses if r.status_code == 429):
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        assert refused.json()["error"]["code"] == "rate_limited"


def hung_store(tmp_path: Path, address: str, **overrides: object) -> object:
    return running_docent(
        tmp_path, redis_url=f"redis://{address}/0", store_timeout_s=0.3, **overrides
    )


@contextmanager
def unreachable(kind: str) -> Iterator[str]:
    """A store address that hangs (accepts, never answers) or refuses connections."""
    if kind == "hung":
        with silent_server() as address:
            yield address
    else:
        yield f"127.0.0.1:{free_port()}"


@pytest.mark.parametrize("kind", ["hung", "refused"])
def test_a_store_down_admits_chat_and_refuses_ingest_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    with unreachable(kind) as address, hung_store(tmp_path, address) as docent:  # type: ignore[attr-defined]
        with docent.client() as client, caplog.at_level(logging.WARNING):
            chat = client.post("/chat", json={"question": "anything"})
        with docent.admin() as admin:
            ingest = admin.post("/ingest", json={"documents": [{"id": "a", "text": "hello"}]})
    assert chat.status_code == 200
    assert chat.elapsed.total_seconds() < 2.0
    assert any("rate limit store unavailable" in r.getMessage() for r in caplog.records)
    assert ingest.status_code == 503
    assert ingest.headers["retry-after"] == "5"
    assert ingest.json()["error"]["code"] == "unavailable"
    assert ingest.elapsed.total_seconds() < 2.0


@pytest.mark.parametrize("fail_open", [False, True])
def test_rate_limit_fail_open_overrides_both_routes(tmp_path: Path, fail_open: bool) -> None:
    with (
        silent_server() as address,
        hung_store(tmp_path, address, rate_limit_fail_open=fail_open) as docent,  # type: ignore[attr-defined]
        docent.admin() as admin,
    ):
        chat = admin.post("/chat", json={"question": "anything"})
        ingest = admin.post("/ingest", json={"documents": [{"id": "a", "text": "hello"}]})
    expected = 200 if fail_open else 503
    assert (chat.status_code, ingest.status_code) == (expected, expected)
