"""A real OpenAI-compatible model server (llama.cpp serving SmolLM2-135M-Instruct) end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from docent.tokens import count_tokens
from tests.conftest import corpus_documents, parse_sse, running_docent
from tests.support.llama import MODEL_NAME

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_a_streamed_answer_from_llama_cpp(tmp_path: Path, llama_url: str) -> None:
    # llama.cpp's /v1/embeddings is no embeddings backend (unpooled per-token vectors): BM25 here.
    with running_docent(
        tmp_path,
        openai_base_url=llama_url,
        chat_model=MODEL_NAME,
        embedding_provider="none",
        max_answer_tokens=48,
        request_timeout_s=60,
    ) as docent:
        docent.ingest(corpus_documents())
        with docent.client() as client:
            response = client.post("/chat", json={"question": "How do I install Docent?"})
    assert response.status_code == 200
    events = parse_sse(response.text)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sources" and events[0]["sources"]
    assert kinds[-1] == "done", events[-1]
    chunks = [e["content"] for e in events if e["type"] == "chunk"]
    assert len(chunks) > 3  # token by token, not one blob
    done = events[-1]
    assert done["model"] == MODEL_NAME
    # llama.cpp reports no usage in streams: Docent counts with tiktoken (o200k_base fallback).
    answer = "".join(chunks)
    assert done["usage"]["completion_tokens"] >= count_tokens(answer) - 2
    assert done["usage"]["completion_tokens"] > 0
    assert done["usage"]["prompt_tokens"] > 100
    assert set(done["citations"]) <= {s["id"] for s in events[0]["sources"]}
