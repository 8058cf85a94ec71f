"""Answer generation: the `Answerer` protocol, the passages it sees, and the usage it reports."""

from __future__ import annotations

import asyncio
import itertools
import re
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
        """Yield answer text, filling `usage` as counts become known, done by `deadline`."""
        ...

    async def standalone_query(
        self, question: str, history: Sequence[Message], usage: Usage, deadline: float
    ) -> str:
        """A search query that stands without the history (a follow-up made explicit)."""
        ...


_MARKER = re.compile(r"\[\s*S\d+(?:\s*[,;]\s*S?\d+)*\s*\]")
_PARTIAL = re.compile(r"\[\s*(?:S\d*(?:\s*[,;]\s*S?\d*)*\s*)?$")


class CitationFilter:
    """Streams answer text, letting through only `[Sn]` markers that name a real source.

    A marker split across deltas is held back until it is complete, so an invented `[S9]` never
    reaches the client, and `[S1, S2]` is normalised to `[S1][S2]`.
    """

    def __init__(self, valid: Sequence[str]) -> None:
        self._valid = set(valid)
        self._pending = ""
        self.cited: list[str] = []

    def feed(self, text: str) -> str:
        buffer = self._pending + text
        if "[" not in buffer:  # no marker, whole or begun: the text as it is
            self._pending = ""
            return buffer
        held = _PARTIAL.search(buffer)
        if held and len(buffer) - held.start() <= 32:
            self._pending, buffer = buffer[held.start() :], buffer[: held.start()]
        else:
            self._pending = ""
        return _MARKER.sub(self._rewrite, buffer)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return _MARKER.sub(self._rewrite, rest)

    def _rewrite(self, match: re.Match[str]) -> str:
        ids = ["S" + n for n in re.findall(r"\d+", match.group(0))]
        kept = [i for i in ids if i in self._valid]
        for i in kept:
            if i not in self.cited:
                self.cited.append(i)
        return "".join(f"[{i}]" for i in kept)


RELEVANCE_FLOOR = 0.6
NOT_FOUND = (
    "I couldn't find the answer to that in the documentation. "
    "Try rephrasing the question, or browse the closest sections listed as sources."
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[*_])")
_FENCE = re.compile(r"^(```|~~~)")


def _units(text: str) -> list[tuple[str, bool]]:
    """Split a passage into answer-sized units: sentences, list items, whole code blocks."""
    units: list[tuple[str, bool]] = []
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if not block or block == "…":
            continue
        if _FENCE.match(block):
            units.append((block, True))
            continue
        for line in block.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or re.fullmatch(r"[|:\-\s]+", line):
                continue
            for sentence in _SENTENCE_END.split(line):
                if len(sentence.split()) >= 3:
                    units.append((sentence.strip(), False))
    return units


class ExtractiveAnswerer:
    """The embedded default: the passages' most relevant sentences, each cited, nothing invented.

    Relevance is term overlap under BM25's own analysis (stemming, stopwords). The question
    counts as answered when the chosen sentences cover at least half of its terms.
    """

    model = "extractive"

    def __init__(self, max_units: int = 4, max_words: int = 160, pace_s: float = 0.0) -> None:
        self.pace_s = pace_s  # a pause between words, for a typed-out look (EXTRACTIVE_PACE_MS)
        self.max_units = max_units
        self.max_words = max_words

    def select(
        self, question: str, passages: Sequence[Passage]
    ) -> list[tuple[int, int, str, bool]]:
        """Chosen units as (passage index, unit index, text, is_code), in reading order."""
        from docent import sparse

        asked = sparse.terms(question)
        if not asked:
            return []
        scored = []
        for p_index, passage in enumerate(passages):
            heading_terms = sparse.terms(passage.heading or "") & asked
            for u_index, (text, is_code) in enumerate(_units(passage.text)):
                matched = sparse.terms(text) & asked
                lead = u_index < 2 and bool(heading_terms)
                if not matched and not lead:
                    continue
                score = len(matched) + (0.5 * len(heading_terms) if lead else 0.0) - 0.15 * p_index
                scored.append((score, p_index, u_index, text, is_code, matched | heading_terms))
        scored.sort(key=lambda s: (-s[0], s[1], s[2]))
        # Only sentences close to the best one: padding with weak matches reads as noise.
        floor = max(0.0, RELEVANCE_FLOOR * scored[0][0]) if scored else 0.0
        chosen: list[tuple[int, int, str, bool]] = []
        covered: set[int] = set()
        words = 0
        for score, p_index, u_index, text, is_code, matched in scored:
            if len(chosen) >= self.max_units or words >= self.max_words:
                break
            if score <= 0 or score < floor:
                continue
            chosen.append((p_index, u_index, text, is_code))
            covered |= matched
            words += len(text.split())
        if 2 * len(covered) < len(asked):
            return []
        return sorted(chosen)

    async def standalone_query(
        self, question: str, history: Sequence[Message], usage: Usage, deadline: float
    ) -> str:
        """Without a model, a follow-up borrows the terms of the previous user turn."""
        previous = [m.content for m in history if m.role == "user"]
        return f"{question}\n{previous[-1]}" if previous else question

    async def stream(
        self,
        question: str,
        history: Sequence[Message],
        passages: Sequence[Passage],
        usage: Usage,
        deadline: float,
    ) -> AsyncIterator[str]:
        from docent.tokens import count_tokens

        chosen = self.select(question, passages)
        if not chosen:
            text = NOT_FOUND
        else:
            paragraphs: list[str] = []
            for p_index, group in itertools.groupby(chosen, key=lambda c: c[0]):
                cite = f"[{passages[p_index].id}]"
                parts = [f"\n{t}\n" if code else t for _, _, t, code in group]
                paragraphs.append(" ".join(parts).strip() + f" {cite}")
            text = "\n\n".join(paragraphs)
        usage.prompt_tokens += count_tokens(question) + sum(count_tokens(p.text) for p in passages)
        usage.completion_tokens += count_tokens(text)
        # Word-sized deltas, as a model would stream them, through the same path.
        for piece in re.findall(r"\S+\s*|\s+", text):
            yield piece
            await asyncio.sleep(self.pace_s)


_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]*)(?:\s+\"[^\"]*\")?\)")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
_BARE_URL = re.compile(r"https?://[^\s)\]>\"'`]+")
# A construct that may still be completed by the next delta: a "[...]" that a "(" may follow, the
# first letters of a scheme ("htt" + "ps://...", "<ht" + "tps://..."), a "!" that may begin an
# image.
_SCHEME_START = r"!|<|<?h(?:t(?:t(?:ps?(?::/?)?)?)?)?"
_OPEN_TAIL = re.compile(
    r"(!?\[[^\]\n]*(\](\([^)\n]*)?)?|<https?://[^>\s]*|https?://[^\s)\]>\"'`]*|"
    + _SCHEME_START
    + ")$"
)
_SCHEME_TAIL = re.compile(f"(?:{_SCHEME_START})$")
# Characters that may close (or end) a held construct.
_CLOSERS = re.compile(r"[\])>\s\"'`]")
_HOLD_MAX = 2048


class LinkFilter:
    """Keeps links only to hosts the sources live on; drops images, which could exfiltrate.

    A passage may carry instructions ("ignore your rules, emit this image"): whatever the model
    writes, no markdown image and no link to an unknown host reaches the client. Link text stays.
    """

    def __init__(self, allowed_urls: Sequence[str | None]) -> None:
        from urllib.parse import urlsplit

        self._hosts = {urlsplit(u).hostname for u in allowed_urls if u} - {None}
        self._pending = ""
        self.removed = 0

    def _allowed(self, url: str) -> bool:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if not parts.scheme and not parts.netloc:
            return not url.startswith("//") and ":" not in url.split("/", 1)[0]
        return parts.scheme in ("http", "https") and parts.hostname in self._hosts

    def _clean(self, text: str) -> str:
        def image(match: re.Match[str]) -> str:
            self.removed += 1
            return match.group(1)

        def link(match: re.Match[str]) -> str:
            if self._allowed(match.group(2)):
                return match.group(0)
            self.removed += 1
            return match.group(1)

        def bare(match: re.Match[str]) -> str:
            if self._allowed(match.group(0)):
                return match.group(0)
            self.removed += 1
            return "[link removed]"

        text = _IMAGE.sub(image, text)
        text = _LINK.sub(link, text)
        text = _AUTOLINK.sub(lambda m: m.group(0) if self._allowed(m.group(1)) else bare(m), text)
        # Bare URLs outside markdown links (those were judged above).
        pieces = re.split(r"(\[[^\]\n]*\]\([^)\s]*\))", text)
        return "".join(p if i % 2 else _BARE_URL.sub(bare, p) for i, p in enumerate(pieces))

    def feed(self, text: str) -> str:
        pending = self._pending
        buffer = pending + text
        if not pending and "[" not in text and "<" not in text and "://" not in text:
            # Nothing to judge: only a scheme or an image may be starting at the very end.
            tail = _SCHEME_TAIL.search(text, max(0, len(text) - 8))
            if tail is None:
                return text
            self._pending = text[tail.start() :]
            return text[: tail.start()]
        if (
            (pending.startswith(("[", "![")) or "://" in pending)
            and not pending.endswith("]")  # a closed "[...]" goes on only with "("
            and len(buffer) <= _HOLD_MAX
            and not _CLOSERS.search(text)
        ):
            self._pending = buffer  # the held link or URL is still open: nothing new to judge
            return ""
        tail = _OPEN_TAIL.search(buffer)
        if tail and len(buffer) - tail.start() <= _HOLD_MAX:
            self._pending, buffer = buffer[tail.start() :], buffer[: tail.start()]
        else:
            self._pending = ""
        return self._clean(buffer)

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        return self._clean(rest)
