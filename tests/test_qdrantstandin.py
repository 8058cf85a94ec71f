"""The Qdrant stand-in behaves as a server for qdrant-client's real HTTP transport: keys are
checked, status errors and a closed port become Docent's errors (the retrieval suite itself
runs on it in test_vectors.py)."""

from __future__ import annotations

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
        await good.close()
        await bad.close()


async def test_a_closed_port_is_unavailable() -> None:
    store = QdrantStore("none", url=f"http://127.0.0.1:{free_port()}", timeout_s=1)
    with pytest.raises(Unavailable):
        await store.total()
    await store.close()
