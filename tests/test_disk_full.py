"""A full disk under the embedded store: 507 before it fills, the process alive, reads served.

The real server runs on a small tmpfs mounted for the test (CI runs as root). Edge maps its files
into memory, so without the check a write into a mapped page on a full disk is a SIGBUS: the
process dies, and dies again on restart at the first request that opens the store.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from docent.edge import EdgeStore, free_bytes
from tests.conftest import ADMIN_KEY, USER_KEY
from tests.support.servers import docent_server, log_tail

ADMIN = {"X-API-Key": ADMIN_KEY}
ENV = {"ADMIN_API_KEYS": ADMIN_KEY, "API_KEYS": USER_KEY, "RATE_LIMIT_KEY": "100000/60s"}
DISK_MB = 64
MB = 1024 * 1024

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_MB mounted for the test, unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def batch(n: int) -> list[dict[str, Any]]:
    """Ten documents of about 40 kB each, their words unique to the batch."""
    return [
        {
            "id": f"b{n}-d{i}.md",
            "title": f"Batch {n} document {i}",
            "text": f"# Batch {n} document {i}\n\n"
            + "\n\n".join(
                f"## Part {j}\n\n"
                + " ".join(f"Gauge b{n}x{i} reads {k * j} kilopascal." for k in range(70))
                for j in range(16)
            ),
        }
        for i in range(10)
    ]


def listing(url: str) -> dict[str, int]:
    response = httpx.get(f"{url}/documents?limit=1000", headers=ADMIN, timeout=60)
    assert response.status_code == 200, response.text
    return {d["id"]: d["chunks"] for d in response.json()["documents"]}


def reads_served(url: str, acknowledged: dict[str, int]) -> None:
    """Listing, answers and readiness while the disk is full."""
    assert listing(url) == acknowledged
    answer = httpx.post(
        f"{url}/chat",
        json={"question": "What does gauge b0x3 read?", "filter": {"document_id": "b0-d3.md"}},
        headers={"Accept": "application/json", "X-API-Key": USER_KEY},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert {s["document_id"] for s in answer.json()["sources"]} == {"b0-d3.md"}
    ready = httpx.get(f"{url}/health/ready", timeout=30)
    assert ready.status_code == 200, ready.text  # degraded, not down: reads go on
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["disk"]["ok"] is False
    assert body["checks"]["disk"]["error"] == "InsufficientStorage"
    assert body["checks"]["vectors"]["ok"] is True


def test_a_full_disk_is_507_before_it_fills_and_loses_nothing(small_disk: Path) -> None:
    shard = small_disk / "qdrant" / "docent"
    acknowledged: dict[str, int] = {}
    refused: httpx.Response | None = None
    with docent_server(ENV, str(small_disk), log=small_disk.parent / "first.log") as (url, process):
        with httpx.Client(base_url=url, headers=ADMIN, timeout=120) as client:
            for n in range(200):
                response = client.post("/ingest", json={"documents": batch(n)})
                if response.status_code != 200:
                    refused = response
                    free_at_refusal = free_bytes(shard)
                    break
                assert response.json()["chunks"] > 0
                for doc in client.get("/documents?limit=1000").json()["documents"]:
                    acknowledged[doc["id"]] = doc["chunks"]
            assert refused is not None, "the disk never filled"
            assert refused.status_code == 507, refused.text
            error = refused.json()["error"]
            assert error["code"] == "insufficient_storage"
            assert "nothing was written" in error["message"]
            assert str(small_disk) not in refused.text
            # Refused before the disk filled: room is left, and another try is refused the same.
            assert free_at_refusal > MB
            again = client.post("/ingest", json={"documents": batch(999)})
            assert again.status_code == 507
        assert process.poll() is None  # alive: no SIGBUS
        reads_served(url, acknowledged)
        # A delete still goes through (it needs next to no room), and the document is gone.
        gone = httpx.delete(f"{url}/documents/b0-d9.md", headers=ADMIN, timeout=60)
        assert gone.status_code == 200, gone.text
        del acknowledged["b0-d9.md"]

    # Restarted on the full disk: it serves reads at once, and every acknowledged write is there.
    log = small_disk.parent / "restarted.log"
    with docent_server(ENV, str(small_disk), log=log) as (url, process):
        try:
            reads_served(url, acknowledged)
        except httpx.HTTPError as exc:
            raise AssertionError(f"{exc} (exit {process.wait(5)}): {log_tail(log)}") from exc
        assert process.poll() is None
    print(
        f"\ndisk full: {len(acknowledged)} documents acknowledged, 507 with "
        f"{free_at_refusal / MB:.1f} MB of {DISK_MB} MB free"
    )

    # No orphan chunk: the store holds exactly the chunks its documents list.
    async def total() -> int:
        store = EdgeStore(str(shard))
        try:
            return await store.total()
        finally:
            await store.aclose()

    assert asyncio.run(total()) == sum(acknowledged.values())
    assert len(acknowledged) >= 20 and os.path.exists(shard)
