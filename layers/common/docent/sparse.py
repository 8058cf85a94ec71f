"""BM25 sparse vectors, computed in-process by Qdrant's own `Bm25` model for every backend.

The same tokenizer, stemmer and stopwords serve the Edge store and a Qdrant server, so both rank
alike; the IDF half of BM25 is applied by the engine (the collection's `Modifier.IDF`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from docent.vectors import SparseVector

if TYPE_CHECKING:
    from qdrant_edge import Bm25


@lru_cache(maxsize=1)
def _model() -> Bm25:
    from qdrant_edge import Bm25, Bm25Config

    return Bm25(Bm25Config(language="english"))


def encode_document(text: str) -> SparseVector:
    """Term-frequency weights of `text` as an indexed document."""
    vector = _model().embed_document(text)
    return SparseVector(list(vector.indices), list(vector.values))


def encode_query(text: str) -> SparseVector:
    """The query's distinct terms, each with weight 1."""
    vector = _model().embed_query(text)
    return SparseVector(list(vector.indices), list(vector.values))


def terms(text: str) -> frozenset[int]:
    """The stemmed, stopword-free term ids of `text` (what BM25 matches on)."""
    return frozenset(_model().embed_query(text).indices)
