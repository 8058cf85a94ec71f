"""The Qdrant stand-in behaves as a server for qdrant-client's real HTTP transport: keys are
checked, status errors and a closed port become Docent's errors (the retrieval suite itself
runs on it in test_vectors.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docent.errors import Unavailable, UpstreamError
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
