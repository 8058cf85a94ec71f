"""The optional local dense model (all-MiniLM-L6-v2 from PyPI): real hybrid retrieval offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import running_docent

pytest.importorskip("sentence_transformers", reason="the local extra is part of make test")

DOCUMENTS = [
    {
        "id": "sleep.md",
        "url": "https://docs.example.com/sleep",
        "text": "# Resting\n\nAdults should get between seven and nine hours of slumber every "
        "night; less than that harms memory and mood.",
    },
    {
        "id": "passwords.md",
        "url": "https://docs.example.com/passwords",
        "text": "# Passwords\n\nGrown-ups need the admin password before they change settings. "
        "How much the password needs to change is up to the administrator.",
    },
    {
        "id": "memory.md",
        "url": "https://docs.example.com/memory",
        "text": "# Server memory\n\nHow much memory the server needs depends on the corpus; "
        "grown-ups running large sites need more.",
    },
    {
        "id": "colors.md",
        "url": "https://docs.example.com/colors",
        "text": "# Themes\n\nThe widget takes a primary colour and a font from data attributes.",
    },
]
QUESTION = "How much shut-eye do grown-ups need?"


def ranking(tmp_path: Path, **overrides: Any) -> list[str]:
    with running_docent(tmp_path, **overrides) as docent:
        docent.ingest(DOCUMENTS)
        with docent.client(headers={"Accept": "application/json"}) as client:
            response = client.post("/chat", json={"question": QUESTION, "top_k": 4})
        assert response.status_code == 200, response.text
        return [s["document_id"] for s in response.json()["sources"]]


@pytest.mark.slow
def test_hybrid_finds_the_paraphrased_passage_bm25_ranks_lower(tmp_path: Path) -> None:
    bm25 = ranking(tmp_path / "bm25")
    hybrid = ranking(tmp_path / "hybrid", embedding_provider="local")
    # The words match other pages; only the meaning matches this one: BM25 does not find it
    # at all, the fused ranking does (after the pages that match both ways).
    assert "sleep.md" not in bm25
    assert "sleep.md" in hybrid
    assert set(bm25) < set(hybrid)


@pytest.mark.slow
async def test_the_local_model_ranks_by_meaning() -> None:
    from docent.config import load_settings
    from docent.embeddings import LocalEmbedder
    from docent.generation import Usage

    embedder = LocalEmbedder(load_settings(embedding_provider="local"), None)
    texts = [d["text"] for d in DOCUMENTS]
    vectors = await embedder.embed_documents(texts, Usage())
    query = await embedder.embed_query(QUESTION, Usage())
    scores = [sum(a * b for a, b in zip(query, v, strict=True)) for v in vectors]
    assert len(query) == 384
    assert max(range(len(texts)), key=scores.__getitem__) == 0  # the sleep page
    assert embedder.counters.requests == 2
