"""Heading-aware chunks sized in tokens, with overlap.

Each section is tokenised once; chunk boundaries are chosen in token space at the best break
that fits: between blocks, else at a line end, a sentence end, a word, and only as a last
resort mid-word. A code block or table that fits is never cut, and overlap never starts inside
one. Every chunk is an exact slice of its section's text, so overlapping chunks of a section
can later be merged back by their character offsets.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass

from docent.parsing import Block, ParsedDocument, Section

SEPARATOR = "\n\n"
# Break priorities: higher is a better place to end a chunk.
_BLOCK, _LINE, _SENTENCE, _WORD = 4, 3, 2, 1
_SENTENCE_END = re.compile(r"[.!?:;](?=\s)")


@dataclass(frozen=True)
class Chunk:
    text: str
    headings: tuple[str, ...]
    anchor: str | None
    section: int
    position: int
    start: int
    tokens: int
    # Where a code block is longer than a chunk: the chunk starts, or ends, inside it (the text
    # stays an exact slice; retrieval's merge gives the passage the fence it lacks).
    code_open: bool = False
    code_close: bool = False


def section_text(section: Section) -> str:
    """The section's blocks joined by blank lines: the text chunk offsets refer to."""
    return SEPARATOR.join(block.text for block in section.blocks)


def _block_spans(section: Section) -> Iterator[tuple[int, int, Block]]:
    """Each block with where it starts and ends in the section's text (`section_text`)."""
    offset = 0
    for block in section.blocks:
        end = offset + len(block.text)
        yield offset, end, block
        offset = end + len(SEPARATOR)


def _breaks(section: Section, text: str) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """Char offsets where a chunk may end, with priority; and the spans that must stay whole."""
    breaks: dict[int, int] = {}
    whole: list[tuple[int, int]] = []
    for offset, end, block in _block_spans(section):
        body = block.text
        if block.kind in ("code", "table"):
            whole.append((offset, end))
            for match in re.finditer(r"\n", body):
                breaks[offset + match.end()] = _LINE
        else:
            for match in re.finditer(r"\s+", body):
                breaks.setdefault(offset + match.end(), _WORD)
            for match in _SENTENCE_END.finditer(body):
                breaks[offset + match.end() + 1] = _SENTENCE
            for match in re.finditer(r"\n", body):
                breaks[offset + match.end()] = _LINE
        breaks[end + len(SEPARATOR)] = _BLOCK
    return breaks, whole


def _inside(position: int, whole: list[tuple[int, int]]) -> tuple[int, int] | None:
    for start, end in whole:
        if start < position < end:
            return start, end
    return None


def chunk_section(
    section: Section, *, max_tokens: int, overlap_tokens: int, encoding: object
) -> list[tuple[int, str, int]]:
    """(start, text, tokens) for each chunk of one section."""
    text = section_text(section)
    if not text.strip():
        return []
    enc = encoding
    tokens = enc.encode(text, disallowed_special=())  # type: ignore[attr-defined]
    if len(tokens) <= max_tokens:  # one chunk: no offsets or break points needed
        stripped = text.strip()
        count = len(tokens) if stripped == text else _count(enc, stripped)
        return [(len(text) - len(text.lstrip()), stripped, count)]
    offsets = token_offsets(enc, tokens)
    offsets = [*offsets, len(text)]
    n = len(tokens)
    breaks, whole = _breaks(section, text)
    # Break points as token indices (the token starting at or after each char offset).
    candidates: dict[int, int] = {}
    for char, priority in breaks.items():
        index = bisect.bisect_left(offsets, char)
        if 0 < index <= n and (_inside(char, whole) is None or priority == _LINE):
            candidates[index] = max(priority, candidates.get(index, 0))
    candidates[n] = _BLOCK
    ordered = sorted(candidates)

    chunks: list[tuple[int, str, int]] = []
    begin = 0
    while begin < n:
        limit = begin + max_tokens
        end = n if limit >= n else _best_break(ordered, candidates, begin, limit, offsets, whole)
        start_char, end_char = offsets[begin], offsets[end]
        piece = text[start_char:end_char]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            chunks.append((start_char + lead, stripped, _count(enc, stripped)))
        if end >= n:
            break
        begin = _overlap_start(begin, end, overlap_tokens, ordered, offsets, whole)
    return chunks


def _best_break(
    ordered: list[int],
    candidates: dict[int, int],
    begin: int,
    limit: int,
    offsets: list[int],
    whole: list[tuple[int, int]],
) -> int:
    lo = bisect.bisect_right(ordered, begin)
    hi = bisect.bisect_right(ordered, limit)
    window = ordered[lo:hi]
    # A whole block (code, table) that straddles the limit: end before it if that makes progress.
    straddling = _inside(offsets[limit], whole)
    if straddling is not None:
        before = bisect.bisect_left(offsets, straddling[0])
        block_tokens = bisect.bisect_left(offsets, straddling[1]) - before
        if before > begin and block_tokens <= limit - begin:
            window = [i for i in window if i <= before]
    for priority in (_BLOCK, _LINE, _SENTENCE, _WORD):
        best = [i for i in window if candidates[i] >= priority]
        # Prefer a full chunk: only take a strong break if it fills at least half the budget.
        if best and (best[-1] - begin >= (limit - begin) // 2 or priority == _WORD):
            return best[-1]
    return window[-1] if window else limit


def _overlap_start(
    begin: int,
    end: int,
    overlap: int,
    ordered: list[int],
    offsets: list[int],
    whole: list[tuple[int, int]],
) -> int:
    if overlap <= 0:
        return end
    target = max(begin + 1, end - overlap)
    index = bisect.bisect_left(ordered, target)
    start = ordered[index] if index < len(ordered) else end
    if start >= end:
        return end
    inside = _inside(offsets[start], whole)
    if inside is not None:
        # Never start inside a code block: skip past it, or drop the overlap.
        after = bisect.bisect_left(offsets, inside[1])
        return after if after < end else end
    return start


# UTF-8 continuation bytes: the second to fourth byte of a character.
_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))
_CONTINUATION = re.compile(b"[\\x80-\\xbf]")
_WHOLE_CHARACTERS = operator.methodcaller("translate", None, _CONTINUATION_BYTES)


def token_offsets(encoding: object, tokens: list[int]) -> list[int]:
    """Where each token starts in the decoded text, in characters: tiktoken's
    `decode_with_offsets` (a token that starts inside a character starts at that character),
    without its loop in Python over every byte of every token (3.5 times the time on ASCII)."""
    pieces: list[bytes] = encoding.decode_tokens_bytes(tokens)  # type: ignore[attr-defined]
    starts = list(itertools.accumulate(map(len, pieces), initial=0))
    starts.pop()
    data = b"".join(pieces)
    if data.isascii():
        return starts  # every byte a character: byte and character offsets agree
    # Characters before each token: the bytes before it that start a character.
    offsets = list(itertools.accumulate(map(len, map(_WHOLE_CHARACTERS, pieces)), initial=0))
    index = dict(zip(starts, range(len(pieces)), strict=False))
    for inside in index.keys() & {m.start() for m in _CONTINUATION.finditer(data)}:
        i = index[inside]  # a token that starts inside a character starts at that character
        offsets[i] = max(0, offsets[i] - 1)
    offsets.pop()
    return offsets


def _count(encoding: object, text: str) -> int:
    return len(encoding.encode(text, disallowed_special=()))  # type: ignore[attr-defined]


def chunk_document(
    doc: ParsedDocument, *, max_tokens: int, overlap_tokens: int, model: str | None = None
) -> list[Chunk]:
    """The document's chunks, section by section, numbered from 0."""
    from docent.tokens import encoding_for

    encoding = encoding_for(model)
    chunks: list[Chunk] = []
    for index, section in enumerate(doc.sections):
        pieces = chunk_section(
            section, max_tokens=max_tokens, overlap_tokens=overlap_tokens, encoding=encoding
        )
        code = _code_spans(section) if len(pieces) > 1 else []
        for start, text, tokens in pieces:
            end = start + len(text)
            chunks.append(
                Chunk(
                    text,
                    section.headings,
                    section.anchor,
                    index,
                    len(chunks),
                    start,
                    tokens,
                    code_open=_inside(start, code) is not None,
                    code_close=_inside(end, code) is not None,
                )
            )
    return chunks


def _code_spans(section: Section) -> list[tuple[int, int]]:
    """Where the section's code blocks lie in its text (`section_text`)."""
    return [(start, end) for start, end, block in _block_spans(section) if block.kind == "code"]
