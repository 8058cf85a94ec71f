"""Answer generation: the `Answerer` protocol, the passages it sees, and the usage it reports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


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
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "embedding_tokens": self.embedding_tokens,
        }


class Answerer(Protocol):
    """Writes an answer from passages, streaming text deltas with `[Sn]` citations inline."""

    model: str

    def stream(
        self,
        question: str,
        history: Sequence[Message],
        passages: Sequence[Passage],
        usage: Usage,
        deadline: float,
    ) -> AsyncIterator[str]:
        """Yield answer text; fill `usage` as counts become known; finish by `deadline` (monotonic)."""
        ...
