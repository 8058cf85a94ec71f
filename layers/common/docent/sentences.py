"""Passages into answer units: whole sentences, list items, whole tables and code blocks.

An extractive answer quotes its sources, so a unit must read well alone: a sentence split at
its real end (not after "e.g." or inside `a.b()`), a list item with its continuation lines, a
table or a fenced code block whole. Pieces that a chunk boundary cut (a sentence that starts
mid-way or stops short) are marked as fragments, so an answer can leave them out.

Written here rather than taken from a library: the candidates are either slow (pysbd: about
20 ms for fifteen sentences, and it splits after "e.g.") or heavy (blingfire: 99 MB of models
in the Lambda layer for this one function).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

UnitKind = Literal["sentence", "item", "table", "code"]

GAP = "…"  # how retrieval marks the text left out between two chunks of a section
_FENCE = re.compile(r"^\s*(```+|~~~+)")
_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
# GFM's delimiter row, under a table's header: a table written without its outer pipes
# ("a | b" over "--- | ---") is known by it.
_DELIMITER_ROW = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
# Words whose period ends no sentence.
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs cf al approx fig no nos vol mr mrs ms dr st jr sr inc ltd eg ie resp".split()
)
# A sentence ends at . ! ? (maybe closed by a quote or bracket) before a space and a capital,
# a digit, or an opening quote, bracket, backtick or emphasis mark.
_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+[\"'“‘(\[`*_A-Z0-9])")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_TERMINAL = re.compile(r"[.!?:][\"'”’)\]*_]*$")
_DIAGRAMS = frozenset({"mermaid", "plantuml", "dot", "graphviz", "svg", "ditaa"})


@dataclass(frozen=True)
class Unit:
    text: str
    kind: UnitKind
    block: int  # the block (paragraph, list, table, code) it comes from, counted from 0
    fragment: bool = False  # cut by a chunk boundary: not a whole sentence

    @property
    def words(self) -> int:
        return len(self.text.split())


def table_parts(table: str) -> tuple[list[str], list[str]]:
    """A table's header lines (its header row and delimiter row; none where a chunk boundary
    cut them off) and its body rows."""
    lines = table.splitlines()
    if len(lines) >= 2 and _DELIMITER_ROW.match(lines[1]):
        return lines[:2], lines[2:]
    return [], lines


def _is_table(lines: list[str]) -> bool:
    """Rows between pipes, or a GFM table without them: a header with a `|`, then a delimiter
    row that has one too (a line of dashes alone under text is a setext heading)."""
    if all(_TABLE_ROW.match(line) for line in lines):
        return True
    return (
        len(lines) >= 2
        and "|" in lines[0]
        and "|" in lines[1]
        and _DELIMITER_ROW.match(lines[1]) is not None
    )


def blocks(text: str) -> list[tuple[str, str]]:
    """(text, kind) of each block: split at blank lines outside code fences.

    Kinds: code, list, table, text, and gap (retrieval's mark for text left out)."""
    found: list[tuple[str, str]] = []
    current: list[str] = []
    fence: str | None = None

    def close() -> None:
        body = "\n".join(current).strip("\n")
        current.clear()
        if not body.strip():
            return
        first = body.lstrip().splitlines()[0]
        if body.strip() == GAP:
            found.append((GAP, "gap"))
        elif _FENCE.match(first):
            found.append((body.strip(), "code"))
        elif _is_table(body.strip().splitlines()):
            found.append((body.strip(), "table"))
        elif _ITEM.match(first):
            found.append((body.strip(), "list"))
        else:
            found.append((body.strip(), "text"))

    for line in text.split("\n"):
        opener = _FENCE.match(line)
        if fence is not None:
            current.append(line)
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
                close()
            continue
        if opener:
            close()
            fence = opener.group(1)
            current.append(line)
            continue
        if not line.strip():
            close()
            continue
        if line.strip() == GAP:
            close()
            current.append(line)
            close()
            continue
        current.append(line)
    close()
    return found


def split_sentences(paragraph: str) -> list[str]:
    """The paragraph's sentences, each exactly as written (soft line breaks kept)."""
    # Periods inside `code spans` end nothing: mask them while looking for ends.
    masked = _CODE_SPAN.sub(lambda m: "x" * len(m.group(0)), paragraph)
    sentences = []
    start = 0
    for match in _END.finditer(masked):
        end = match.end()
        before = masked[start : match.start() + 1].split()
        word = before[-1].lower().strip("(\"'“‘") if before else ""
        stem = word.rstrip(".")
        if stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
            continue  # "e.g." or an initial
        piece = paragraph[start:end].strip()
        if piece:
            sentences.append(piece)
        start = end
    rest = paragraph[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def _items(block: str) -> list[str]:
    """A list's items, each with its continuation lines."""
    items: list[str] = []
    for line in block.split("\n"):
        if _ITEM.match(line) or not items:
            items.append(line.rstrip())
        else:
            items[-1] += "\n" + line.rstrip()
    return [i for i in items if i.strip()]


def units(text: str) -> list[Unit]:
    """The passage as answer units, in reading order."""
    found: list[Unit] = []
    parts = blocks(text)
    for index, (body, kind) in enumerate(parts):
        at_edge_before = index == 0 or parts[index - 1][1] == "gap"
        at_edge_after = index == len(parts) - 1 or parts[index + 1][1] == "gap"
        if kind == "gap":
            continue
        if kind == "code":
            lines = body.splitlines()
            closed = len(lines) > 1 and bool(_FENCE.match(lines[-1]))
            language = _FENCE.sub("", lines[0]).strip().lower()
            # A diagram's source reads as noise; an unclosed fence would swallow the answer.
            found.append(Unit(body, "code", index, not closed or language in _DIAGRAMS))
        elif kind == "table":
            # Whole rows, even where a chunk boundary cut the table (chunks end a table's part
            # at a line's end): a quote of its rows, if headless, reads as they did.
            found.append(Unit(body, "table", index))
        elif kind == "list":
            items = _items(body)
            for n, item in enumerate(items):
                cut = (n == 0 and at_edge_before and not _ITEM.match(item)) or (
                    n == len(items) - 1 and at_edge_after and not _TERMINAL.search(item)
                )
                found.append(Unit(item, "item", index, cut))
        else:
            sentences = split_sentences(body)
            for n, sentence in enumerate(sentences):
                first = sentence.lstrip("*_\"'“‘([`")[:1]
                cut = (n == 0 and at_edge_before and not (first.isupper() or first.isdigit())) or (
                    n == len(sentences) - 1 and at_edge_after and not _TERMINAL.search(sentence)
                )
                found.append(Unit(sentence, "sentence", index, cut or _has_html(sentence)))
    return found


_TAG = re.compile(r"</?([a-zA-Z][\w-]*)(\s[^<>]*)?/?>")
# HTML's elements, for telling markup from a placeholder written in angle brackets: `(?P<name>...)`
# or `<pk>` in a URL pattern is syntax the docs explain (flattened from code to text), not HTML.
_ELEMENTS = frozenset(
    "a abbr b blockquote body br button caption center code col dd del details div dl dt em "
    "embed figcaption figure font footer form h1 h2 h3 h4 h5 h6 head header hr html i iframe img "
    "input ins kbd label li link main mark meta nav noscript object ol option p picture pre q s "
    "samp script section select small source span strong style sub summary sup svg table tbody "
    "td template textarea tfoot th thead title tr tt u ul var video".split()
)


def _has_html(sentence: str) -> bool:
    """Raw HTML outside code spans (a terminal capture's markup, a layout tag)."""
    for tag in _TAG.finditer(_CODE_SPAN.sub("", sentence)):
        if tag.group(1).lower() in _ELEMENTS or tag.group(2):
            return True
    return False
