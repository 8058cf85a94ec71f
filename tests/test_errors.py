"""One error tree: drawn in errors.py's docstring, statuses and headers from the error itself
wherever an error is reported (JSON, stream, an answer collected as JSON, OpenAI's payload),
and each store mapping its own client's failures."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from docent import errors
from docent.qdrant import QdrantStore
from tests.conftest import USER_KEY, corpus_documents, parse_sse, running_docent
from tests.support.standins import Fault, StandIn


def _classes() -> dict[str, type[errors.DocentError]]:
    found: dict[str, type[errors.DocentError]] = {}
    todo: list[type[errors.DocentError]] = [errors.DocentError]
    while todo:
        cls = todo.pop()
        if cls.__module__ == errors.__name__:
            found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def test_the_docstring_draws_every_error_class_with_its_parent_status_and_code() -> None:
    tree = re.compile(r"^[ │├└─]*?(\w+)\s+(\d{3}) (\w+)")
    drawn = []  # (column, class name, status, code), in the docstring's order
    for line in (errors.__doc__ or "").splitlines():
        match = tree.match(line)
        if match:
            drawn.append((match.start(1), match[1], int(match[2]), match[3]))
    classes = _classes()
    assert sorted(name for _, name, _, _ in drawn) == sorted(classes)
    for at, (column, name, status, code) in enumerate(drawn):
        cls = classes[name]
        assert (cls.status_code, cls.code) == (status, code), name
        if cls is not errors.DocentError:
            parent = next(n for c, n, _, _ in reversed(drawn[:at]) if c < column)
            assert cls.__bases__[0].__name__ == parent, name


def test_a_model_refusal_collected_as_json_keeps_its_status_and_retry_after(
    tmp_path: Path, standin: tuple[str, StandIn]
) -> None:
    url, state = standin
    with running_docent(
        tmp_path, openai_base_url=url, embedding_provider="none", model_max_retries=0
    ) as docent:
        docent.ingest(corpus_documents())
        with docent.client() as client:
            state.faults = [Fault(429, {"retry-after": "7"})]
            answer = client.post(
                "/chat", json={"question": "invoices?"}, headers={"Accept": "application/json"}
            )
            state.faults = [Fault(429, {"retry-after": "7"})]
            streamed = parse_sse(client.post("/chat", json={"question": "invoices?"}).text)
            state.faults = [Fault(429, {"retry-after": "7"})]
            completion = client.post(
                "/v1/chat/completions",
                json={"model": "docent", "messages": [{"role": "user", "content": "invoices?"}]},
                headers={"Authorization": f"Bearer {USER_KEY}"},
            )
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "7"
    assert answer.json()["error"]["code"] == "unavailable"
    assert streamed[-1] == {
        "type": "error",
        "code": "unavailable",
        "message": "The model server is rate limiting; try again shortly.",
    }
    assert completion.status_code == 503 and completion.headers["retry-after"] == "7"


class _Unreachable:
    """A client whose collection exists but whose description fails in transport."""

    async def collection_exists(self, name: str) -> bool:
        return True

    async def get_collection(self, name: str) -> Any:
        raise httpx.ConnectError("connection refused by 10.0.0.7:6333")

    async def close(self) -> None:
        return None


async def test_describing_the_collection_maps_its_failure_like_every_other_call() -> None:
    store = QdrantStore("docs", url="http://10.0.0.7:6333")
    store._client = _Unreachable()  # type: ignore[assignment]
    with pytest.raises(errors.Unavailable) as caught:
        await store.ensure(None)
    assert "10.0.0.7" not in caught.value.message
    await store.aclose()


class _LocalModeMiss(_Unreachable):
    """What qdrant-client's local mode raises for a collection gone behind the store's back."""

    async def get_collections(self) -> Any:
        raise ValueError("Collection docs not found in /srv/qdrant/storage")


async def test_any_other_client_failure_is_a_retryable_503_naming_no_path() -> None:
    store = QdrantStore("docs", url="http://10.0.0.7:6333")
    store._client = _LocalModeMiss()  # type: ignore[assignment]
    with pytest.raises(errors.Unavailable) as caught:
        await store.ping()
    assert caught.value.headers == {"Retry-After": "5"}
    assert "/srv" not in caught.value.message
    await store.aclose()


def _break_the_shard(tmp_path: Path) -> Path:
    """An embedded store Edge made, then broken: its segments folder replaced by a file, so
    Edge's own load fails (an I/O error whose message names the path)."""
    import shutil

    from docent.config import load_settings
    from docent.edge import EdgeStore

    async def make() -> str:
        store = EdgeStore.from_settings(load_settings(qdrant_path=str(tmp_path / "qdrant")))
        await store.total()
        await store.aclose()
        return store.path

    shard = Path(asyncio.run(make()))
    shutil.rmtree(shard / "segments")
    (shard / "segments").write_text("not a folder")
    return shard


def test_the_embedded_store_maps_edge_failures_itself(tmp_path: Path) -> None:
    from docent.config import load_settings
    from docent.edge import EdgeStore

    shard = _break_the_shard(tmp_path)
    store = EdgeStore.from_settings(load_settings(qdrant_path=str(tmp_path / "qdrant")))

    async def total() -> int:
        try:
            return await store.total()
        finally:
            await store.aclose()

    with pytest.raises(errors.Unavailable) as caught:
        asyncio.run(total())
    assert str(shard) in str(caught.value.__cause__)  # Edge's own error names the folder
    assert caught.value.headers == {"Retry-After": "5"}
    assert str(tmp_path) not in caught.value.message
    assert not store.lock.held  # a shard that did not open holds no lock


def test_a_route_over_a_failing_store_keeps_its_503_without_a_wrapper(tmp_path: Path) -> None:
    """No route translates: the store's own error reaches the client with its status."""
    _break_the_shard(tmp_path)
    with running_docent(tmp_path) as docent, docent.admin() as admin:
        listing = admin.get("/documents")
        deleted = admin.delete("/documents/a")
        ingested = admin.post("/ingest", json={"documents": [{"id": "a", "text": "hi"}]})
        with docent.client() as client:
            chat = client.post(
                "/chat", json={"question": "anything"}, headers={"Accept": "application/json"}
            )
    for response in (listing, deleted, ingested, chat):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "unavailable"
        assert str(tmp_path) not in response.text


def test_a_disk_failure_keeps_its_description_and_drops_its_path() -> None:
    import errno

    with pytest.raises(errors.Unavailable) as caught, errors.backend("vector store"):
        raise OSError(errno.ENOSPC, "No space left on device", "/srv/qdrant/docent/wal")
    assert caught.value.message == "The vector store is unavailable: No space left on device."
    assert caught.value.headers == {"Retry-After": "5"}
