"""One error tree: drawn in errors.py's docstring, statuses and headers from the error itself
wherever an error is reported (JSON, stream, an answer collected as JSON, OpenAI's payload),
and each store mapping its own client's failures."""

from __future__ import annotations

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
