"""The Qdrant stand-in behaves as a server for qdrant-client's real HTTP transport: keys are
checked, status errors and a closed port become Docent's errors (the retrieval suite itself
runs on it in test_vectors.py), and its collection snapshots answer qdrant-client's own snapshot
calls."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from docent.errors import Unavailable, UpstreamError
from docent.ingest import DocumentIn, Ingestor
from docent.qdrant import QdrantStore
from tests.support.qdrant import qdrant_standin
from tests.support.servers import free_port


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
async def test_the_api_key_is_checked() -> None:
    with qdrant_standin(api_key="right") as url:
        good = QdrantStore("keyed", url=url, api_key="right")
        await good.ensure(None)
        assert await good.total() == 0
        bad = QdrantStore("keyed", url=url, api_key="wrong")
        with pytest.raises(UpstreamError):
            await bad.total()
        await good.aclose()
        await bad.aclose()


async def test_a_closed_port_is_unavailable() -> None:
    store = QdrantStore("none", url=f"http://127.0.0.1:{free_port()}", timeout_s=1)
    with pytest.raises(Unavailable):
        await store.total()
    await store.aclose()


async def test_bursts_cut_off_by_their_bounds_leave_the_client_whole() -> None:
    """Calls cut off while their connections open must not use up qdrant-client's pool: on its
    own httpx client each lost a slot for good (encode/httpcore#1093), and after these bursts
    every call waited for one that never came. 127.0.0.2, not 127.0.0.1: qdrant-client gives a
    local address an unbounded pool, and a remote server (Qdrant Cloud) httpx's 100."""
    with qdrant_standin(host="127.0.0.2") as url:
        store = QdrantStore("bursts", url=url, timeout_s=5)
        await store.ensure(None)

        async def cut_off() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):  # as a request deadline or a health probe does
                    await store.total()

        try:
            for _ in range(12):
                await asyncio.gather(*(cut_off() for _ in range(300)))
            async with asyncio.timeout(5):
                assert await store.total() == 0
        finally:
            await store.aclose()


def test_the_cli_command_serves_the_standin(tmp_path: Path) -> None:
    import sys

    import httpx

    from tests.support.servers import background_process

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "docent.cli", "qdrant-standin", "--path", str(tmp_path),
               "--port", str(port)]  # fmt: skip
    ready = lambda: httpx.get(f"{url}/readyz", timeout=1).status_code == 200  # noqa: E731
    with background_process(command, ready, "docent qdrant-standin"):
        exists = httpx.get(f"{url}/collections/docent/exists").json()
    assert exists["result"] == {"exists": False}


def note(n: int, revision: int = 0) -> DocumentIn:
    words = " ".join(f"Dial {n} turns {k + revision} notches." for k in range(60))
    text = f"# Note {n}\n\n{words}"
    return DocumentIn(id=f"note-{n}.md", text=text)


async def listing(store: QdrantStore) -> dict[str, tuple[Any, Any]]:
    hits, _ = await store.documents(1000, None)
    return {h.payload["document_id"]: (h.payload["content_hash"], h.id) for h in hits}


async def state(store: QdrantStore) -> tuple[int, dict[str, tuple[Any, Any]]]:
    return await store.total(), await listing(store)


async def test_snapshots_work_through_qdrant_clients_own_methods(tmp_path: Path) -> None:
    """Create, list, download, recover (from a URL, a file:// path, an upload) and delete, each
    through qdrant-client's own call; each recovery brings back exactly the snapshot's points."""
    from qdrant_client import QdrantClient
    from qdrant_client.http import models
    from qdrant_client.http.exceptions import UnexpectedResponse

    with qdrant_standin() as url:
        store = QdrantStore("docent", url=url)
        ingestor = Ingestor(store, None, chunk_tokens=64, overlap_tokens=8, model=None)
        await ingestor.ingest([note(n) for n in range(4)])
        before = await state(store)
        client = QdrantClient(url=url, check_compatibility=False)

        made = client.create_snapshot("docent")
        assert made is not None and made.size > 0 and made.name.endswith(".snapshot")
        assert [s.name for s in client.list_snapshots("docent")] == [made.name]
        address = f"{url}/collections/docent/snapshots/{made.name}"
        body = httpx.get(address).content
        assert len(body) == made.size and hashlib.sha256(body).hexdigest() == made.checksum
        saved = tmp_path / made.name
        saved.write_bytes(body)

        async def change() -> None:
            await ingestor.ingest([note(1, revision=1), note(9)])
            await ingestor.delete("note-0.md")
            assert await state(store) != before

        # From a URL (the stand-in's own), with the checksum checked.
        await change()
        assert client.recover_snapshot("docent", address, checksum=made.checksum) is True
        assert await state(store) == before
        # A wrong checksum is refused and changes nothing.
        await change()
        changed = await state(store)
        with pytest.raises(UnexpectedResponse) as refused:
            client.recover_snapshot("docent", address, checksum="0" * 64)
        assert refused.value.status_code == 400
        assert await state(store) == changed
        # From a file:// path: only inside the stand-in's snapshots folder.
        with pytest.raises(UnexpectedResponse):
            client.recover_snapshot("docent", f"file://{saved}")
        assert await state(store) == changed
        # From an upload, by the generated API and by Docent's own restore.
        uploaded = client.http.snapshots_api.recover_from_uploaded_snapshot(
            collection_name="docent",
            wait=True,
            priority=models.SnapshotPriority.SNAPSHOT,
            checksum=made.checksum,
            snapshot=saved.open("rb"),
        )
        assert uploaded.result is True
        assert await state(store) == before
        await change()
        await store.restore(str(saved))
        assert await state(store) == before
        # Into a collection that does not exist yet: created.
        assert client.recover_snapshot("copy", address) is True
        copy = QdrantStore("copy", url=url)
        assert await state(copy) == before
        # A file that is not a snapshot: refused, nothing changed.
        junk = tmp_path / "junk.snapshot"
        junk.write_bytes(b"not a snapshot")
        with pytest.raises(UpstreamError):
            await store.restore(str(junk))
        assert await state(store) == before

        assert client.delete_snapshot("docent", made.name) is True
        assert client.list_snapshots("docent") == []
        assert httpx.get(address).status_code == 404
        with pytest.raises(UnexpectedResponse) as missing:
            client.list_snapshots("nothing")
        assert missing.value.status_code == 404
        client.close()
        await store.aclose()
        await copy.aclose()


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
async def test_snapshot_routes_check_the_api_key() -> None:
    with qdrant_standin(api_key="right") as url:
        store = QdrantStore("keyed", url=url, api_key="right")
        await store.ensure(None)
        made = httpx.post(f"{url}/collections/keyed/snapshots", headers={"api-key": "right"})
        name = made.json()["result"]["name"]
        address = f"{url}/collections/keyed/snapshots/{name}"
        for method, path in (
            ("POST", f"{url}/collections/keyed/snapshots"),
            ("GET", f"{url}/collections/keyed/snapshots"),
            ("GET", address),
            ("DELETE", address),
            ("POST", f"{url}/collections/keyed/snapshots/upload"),
            ("PUT", f"{url}/collections/keyed/snapshots/recover"),
        ):
            assert httpx.request(method, path, headers={"api-key": "wrong"}).status_code == 401
        assert httpx.get(address, headers={"api-key": "right"}).status_code == 200
        await store.aclose()
