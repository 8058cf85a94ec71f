"""The value types that cross module boundaries: a chunk's payload, conversation turns, the
passages an answerer sees, what it is asked with, and the token usage a request reports. Plain
data, no behaviour beyond rendering; every module imports them from here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypedDict


class ChunkPayload(TypedDict, total=False):
    """What the vector store keeps beside each chunk's vectors (`vectors.ChunkPoint.payload`).

    Every chunk carries all the keys but the document's own (`metadata`, `format`,
    `chunk_count`, `ingested_at`), which only its first chunk (its head, position 0) holds;
    chunks written by older versions may lack the newer keys (or hold the document's own on
    every chunk), so readers use `.get` for all but `document_id` and `text`.
    """

    document_id: str
    position: int
    section: int
    start: int
    text: str
    title: str | None
    url: str | None
    headings: list[str]
    anchor: str | None
    tags: list[str]
    format: str | None
    content_hash: str
    chunk_count: int
    ingested_at: int
    metadata: dict[str, Any]
    # `text`'s length in tokens of tiktoken's `encoding`, counted when it was chunked: the chat's
    # context budget reads it instead of encoding the text again for every question.
    tokens: int
    encoding: str
    # Set (True) on every chunk of a page whose headings are release versions, a changelog by its
    # content (`retrieval.history_headings`); absent on every other page.
    history: bool
    # Set (True) where the chunk starts / ends inside a code block longer than a chunk
    # (`chunking.Chunk`); `retrieval.merge_text` gives the passage the fence it lacks.
    code_open: bool
    code_close: bool


@dataclass(frozen=True)
class Message:
    """One turn of the conversation the client sent as history."""

    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class Passage:
    """One source as the answerer sees it: a document section, cited as `[S1]`."""

    id: str
    title: str | None
    heading: str | None
    text: str
    score: float


@dataclass
class Usage:
    """Token counts for one request; answerers fill it while they stream."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class AnswerRequest:
    """What an answerer answers from: the question, the conversation before it, the passages
    retrieved for it, the `Usage` to fill in as counts become known, and the `time.monotonic()`
    deadline to be done by."""

    question: str
    history: Sequence[Message]
    passages: Sequence[Passage]
    usage: Usage
    deadline: float
    # Names the question asks about that the documentation never mentions (searched for when
    # no passage held them): the extractive answerer does not answer such a question.
    unknown_names: tuple[str, ...] = ()
    # The best retrieved section's BM25 score (`retrieval.Source.lexical`; 0 when unknown): the
    # extractive answerer weighs it in deciding whether the passages answer.
    lexical_score: float = 0.0
