"""Retrieval: search the store, merge chunks into one source per document section, fit the budget.

A reader clicks a source, so a source is a section of a document with a deep link to its heading,
never the same passage twice: overlapping chunks of one section are merged back into one text.
Only a document's current version is read: chunks whose hash differs from their document's head
(left beside it while a re-ingest was switching versions, or by a crash then) are dropped
(`VectorStore.search_current`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from docent import sparse
from docent.values import ChunkPayload, Passage, Usage
from docent.vectors import Hit, Query, SearchFilter, VectorStore

if TYPE_CHECKING:
    from docent.embeddings import Embedder

SNIPPET_CHARS = 240
# Chunks fetched per requested source: several chunks of one section collapse into one source.
CHUNKS_PER_SOURCE = 3
# Pages that record a project's history (release notes, changelogs, announcements) share the
# guides' vocabulary and answer few questions: on `make eval` they outranked the expected guide
# page for 6 of 45 Django REST framework questions (BM25; 4 with hybrid), none after. Their
# sections rank at this share of their score.
HISTORY_WEIGHT = 0.5
# An API reference page (Sphinx autodoc's `api.html`, a "Reference" index) holds every name in
# a few huge sections, so it matches a question about any of them ahead of the guide page that
# explains it. It ranks like a history page. (Named pages such as aiohttp's
# `client_reference.html` too: tried, recall@1 of the fresh pair +1 question, recall@5 -1 with
# BM25 and -2 hybrid, for the questions only the reference answers; left out.)
REFERENCE_WEIGHT = 0.5
# A page about the project rather than its use (how to contribute, its authors, its license)
# shares the guides' words: Python-Markdown's contributing guide led for 2 of 20 questions of
# `make eval`'s fresh set, its authors page for 1. It ranks like a history page too.
META_WEIGHT = 0.5
# A page with several matching sections is more likely the page about the question than a page
# that mentions its words once: a section gains this share of the best other section of its page
# among the candidates. On `make eval` (BM25) it put the expected page first for 3 more of 89
# answerable questions (1 Django REST framework, 2 Python), moved none out of first place and
# one out of the top 5; 0.1 to 0.5 all gain, a sum over the page's sections instead loses.
# With BM25 alone.
PAGE_EVIDENCE = 0.2
# With hybrid retrieval (`vectors.fuse`'s scores, each between 0 and 1). Under reciprocal rank
# fusion (rank-based scores, close together) any share cost MRR; over the fused scores of the
# eight sets of `make eval` (2026-11-28) 0.1 put the expected page first for 1 to 3 more
# questions in three pools of four and for none fewer (one fresh question left the top 5); 0.2
# against 0.1: tuning +1, held out and third pair -1 each.
HYBRID_PAGE_EVIDENCE = 0.1
_HISTORY = re.compile(r"release[-_ ]?notes|change[-_ ]?log|announcement|what'?s[-_ ]new", re.I)
# A changelog by what it holds, whatever its name (Requests files its release history as
# "Community Updates", `community/updates.html`): a page with three headings or more, at least
# this share of them versions ("Version 8.1.3", "2.28.1 (2022-06-29)", "1.4.0 - 2023-02-01",
# "3.14.0", Keep a Changelog's "[1.1.0] - 2019-02-15"). Of the ten documentation sets of
# `make eval` it finds their seven changelogs (MkDocs' release notes the least, 35% versions)
# and no other page has even 5%: Python's tutorial numbers its sections ("9.1. A Word About
# Names"), which are not versions.
HISTORY_HEADING_SHARE = 0.25
_VERSION_HEADING = re.compile(
    # Named a version ("Version 8.1.3 - Bug fixes", "v2.0: The big one"): whatever follows.
    r"\s*(?:(?:version|release)\s+v?|v)\[?\d+(?:\.\d+)+[a-z0-9]*\]?(?:$|[\s(\-\u2013\u2014:,])"
    # A bare number: alone, or before a date or a release state ("2.28.1 (2022-06-29)",
    # "[1.1.0] - 2019-02-15", "3.14.0"), not before words: "1.2 - Installing" and
    # "3.1: Overview" number sections.
    r"|\s*\[?\d+(?:\.\d+)+[a-z0-9]*\]?\s*"
    r"(?:$|[(\-\u2013\u2014:,]\s*(?:\(?\d|(?:un)?released\b|$)|\d{4}|(?:un)?released\b)",
    re.I,
)
# Whole page names (the file's stem, or its folder's for an index page, or the title).
_HISTORY_PAGE = re.compile(r"changes|changelog|history|news|releases", re.I)
_REFERENCE_PAGE = re.compile(r"api|api[-_ ]reference|reference", re.I)
_META_PAGE = re.compile(r"contributing|authors|license|code[-_ ]of[-_ ]conduct", re.I)


def page_name(document_id: str) -> str:
    """The page's own name: `api` for `api.html`, `throttling` for `throttling/index.html`."""
    parts = [p for p in re.split(r"[/\\]", document_id) if p]
    if len(parts) > 1 and re.fullmatch(r"index(\.\w+)?", parts[-1]):
        parts.pop()
    return re.sub(r"\.\w+$", "", parts[-1]) if parts else ""


def history_headings(paths: Iterable[Sequence[str]]) -> bool:
    """Whether the heading paths of a page's sections are those of a page that records releases
    (see HISTORY_HEADING_SHARE). Each heading counts once, a version's own too when only its
    subsections hold text ("## [1.1.0] - 2019-02-15", then "### Added")."""
    headings = list(dict.fromkeys(h for path in paths for h in path))
    versions = sum(_VERSION_HEADING.match(h) is not None for h in headings)
    return len(headings) >= 3 and versions >= HISTORY_HEADING_SHARE * len(headings)


def rank_weight(payload: ChunkPayload) -> float:
    """HISTORY_WEIGHT for a changelog-like page (by its name, or by its headings when ingested:
    `history`), REFERENCE_WEIGHT for an API reference, META_WEIGHT for a page about the project
    (contributing, authors, license), else 1."""
    if payload.get("history"):
        return HISTORY_WEIGHT
    return _page_weight(str(payload.get("document_id", "")), str(payload.get("title") or ""))


@functools.lru_cache(maxsize=4096)
def _page_weight(document: str, title: str) -> float:
    # The same pages come back query after query: their weight is worked out once (four
    # regular expressions per candidate were 2% of a chat request's CPU).
    title = title.strip()
    names = (page_name(document), title)
    if _HISTORY.search(f"{document} {title}") or any(_HISTORY_PAGE.fullmatch(n) for n in names):
        return HISTORY_WEIGHT
    if any(_REFERENCE_PAGE.fullmatch(n) for n in names):
        return REFERENCE_WEIGHT
    if any(_META_PAGE.fullmatch(n) for n in names):
        return META_WEIGHT
    return 1.0


@dataclass(frozen=True)
class Source:
    """One cited section: what the client sees, plus the merged text the answerer reads."""

    id: str
    document_id: str
    title: str | None
    url: str | None
    heading: str | None
    score: float
    text: str
    # (encoding, tokens) of `text` where ingest counted them (a section of one chunk).
    counted: tuple[str, int] | None = None
    # The section's BM25 score as BM25 alone ranks it (its best chunk's, weighed as its page, plus
    # PAGE_EVIDENCE of its page's next section), whatever the fused `score`: evidence for
    # `answered` (`generation.LEXICAL_SCORE`).
    lexical: float = 0.0

    def public(self) -> dict[str, Any]:
        """The source as the `sources` event and JSON answers show it."""
        return {
            "id": self.id,
            "document_id": self.document_id,
            "title": self.title,
            "url": self.url,
            "heading": self.heading,
            "score": round(self.score, 6),
            "snippet": snippet(self.text),
        }

    def passage(self, text: str | None = None) -> Passage:
        return Passage(
            self.id, self.title, self.heading, self.text if text is None else text, self.score
        )


def deep_link(url: str | None, anchor: str | None) -> str | None:
    """The document's url plus `#anchor` of the section's heading, where both exist."""
    if not url:
        return None
    if not anchor:
        return url
    return f"{url.split('#', 1)[0]}#{anchor}"


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The text's start with whitespace runs made single spaces, cut at a word within `limit`."""
    # A merged section runs to thousands of characters: flatten only a prefix that is enough
    # unless it is mostly whitespace (the whole text then).
    head = text[: 8 * limit]
    flat = " ".join(head.split())
    if len(head) < len(text) and len(flat) <= limit:
        flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return cut + "…"


def merge_text(pieces: Sequence[tuple[int, str]], in_code: Sequence[tuple[bool, bool]] = ()) -> str:
    """Join chunks of one section by their char offsets: overlaps once, gaps marked with `…`.

    `in_code` (per piece, where given): whether it starts and whether it ends inside a code
    block (a block longer than a chunk). A run of text that starts or ends there gets the fence
    it lacks, so the passage is whole markdown: code is not read as prose, nor prose as code."""
    flags = list(in_code) or [(False, False)] * len(pieces)
    ordered = sorted(zip(pieces, flags, strict=True))
    text = ""
    end = -1
    closes = False  # the run so far ends inside a code block

    def opening(piece: str, opens: bool) -> str:
        return "```\n" + piece if opens else piece

    for (start, piece), (opens, ends_in_code) in ordered:
        if end < 0:
            text, end, closes = opening(piece, opens), start + len(piece), ends_in_code
        elif start - end <= 2:
            # Overlapping, or adjacent: where no overlap could start (inside or just after a
            # code block, or with no overlap set) the next chunk begins past the newlines the
            # previous one's end left off. A gap of a whole chunk or more is text left out.
            text += "\n" * max(0, start - end) + piece[max(0, end - start) :]
            if start + len(piece) >= end:
                end, closes = start + len(piece), ends_in_code
        else:
            text += ("\n```" if closes else "") + "\n…\n" + opening(piece, opens)
            end, closes = start + len(piece), ends_in_code
    return text + ("\n```" if closes else "")


def group_sections(
    hits: Sequence[Hit], top_k: int, page_evidence: float = PAGE_EVIDENCE
) -> list[Source]:
    """Collapse chunk hits into at most `top_k` sources, best first, numbered S1, S2, ..."""
    groups: dict[tuple[str, int], list[Hit]] = {}
    for hit in hits:
        key = (str(hit.chunk["document_id"]), int(hit.chunk.get("section", 0)))
        groups.setdefault(key, []).append(hit)
    weights = {key: rank_weight(g[0].chunk) for key, g in groups.items()}
    best = {key: max(h.score for h in g) * weights[key] for key, g in groups.items()}
    scores = _with_page(best, page_evidence)
    own = best
    if any(h.lexical is not None for h in hits):  # fused: BM25's own scores, ranked as BM25's
        own = {key: max(h.lexical or 0.0 for h in g) * weights[key] for key, g in groups.items()}
    same = own is best and page_evidence == PAGE_EVIDENCE
    lexical = scores if same else _with_page(own, PAGE_EVIDENCE)
    scored = [(scores[key], key, group) for key, group in groups.items()]
    # Equal scores happen (two chunks of one text; under reciprocal rank fusion, first in one
    # list and absent from the other tied with the converse), and the engine returns tied points
    # in no fixed order: the same question could list its sources in another order in another
    # process. Ties go to the page and section that sort first.
    scored.sort(key=lambda item: (-item[0], item[1]))
    sources = []
    for number, (score, key, group) in enumerate(scored[:top_k], start=1):
        first = group[0].chunk
        headings = first.get("headings") or []
        tokens, encoding = first.get("tokens"), first.get("encoding")
        counted = None  # chunks from before the count was kept, or merged ones: counted later
        if len(group) == 1 and isinstance(tokens, int) and isinstance(encoding, str):
            counted = (encoding, tokens)
        sources.append(
            Source(
                id=f"S{number}",
                document_id=str(first["document_id"]),
                title=first.get("title"),
                url=deep_link(first.get("url"), first.get("anchor")),
                heading=headings[-1] if headings else None,
                score=score,
                text=merge_text(
                    [(int(h.chunk.get("start", 0)), str(h.chunk["text"])) for h in group],
                    [
                        (bool(h.chunk.get("code_open")), bool(h.chunk.get("code_close")))
                        for h in group
                    ],
                ),
                counted=counted,
                lexical=lexical[key],
            )
        )
    return sources


def _with_page(best: dict[tuple[str, int], float], share: float) -> dict[tuple[str, int], float]:
    """Each section's score plus `share` of its page's best other section's."""
    by_page: dict[str, list[float]] = {}
    for (document, _), score in best.items():
        by_page.setdefault(document, []).append(score)
    out = {}
    for key, score in best.items():
        others = sorted(by_page[key[0]], reverse=True)
        others.remove(score)
        out[key] = score + share * (others[0] if others else 0.0)
    return out


# At most this many names are searched for per question (one search each).
MAX_NAME_SEARCHES = 4


async def unknown_names(
    store: VectorStore, question: str, sources: Sequence[Source], search_filter: SearchFilter
) -> tuple[str, ...]:
    """The names the question asks about (`generation.proper_names`) that the documentation
    never mentions. Only a name no source holds is searched for, alone: a common name (API,
    HTTP) can miss the sources and still be all over the docs, which then may answer."""
    from docent.generation import unmentioned_names

    texts = [" ".join(filter(None, [s.title, s.heading, s.text])) for s in sources]
    unknown = []
    for name in unmentioned_names(question, texts)[:MAX_NAME_SEARCHES]:
        vector = sparse.encode_query(name)
        if not vector.indices:
            continue  # a stopword in capitals ("What Is ..."): BM25 cannot look for it
        if not await store.search_current(Query(sparse=vector, filter=search_filter, limit=1)):
            unknown.append(name)
    return tuple(unknown)


async def retrieve(
    store: VectorStore,
    embedder: Embedder | None,
    question: str,
    *,
    top_k: int,
    search_filter: SearchFilter,
    usage: Usage,
) -> list[Source]:
    """Search for `question` (hybrid when an embedder is configured) and return its sources."""
    dense = await embedder.embed_query(question, usage) if embedder is not None else None
    hits = await store.search_current(
        Query(
            sparse=sparse.encode_query(question),
            dense=dense,
            filter=search_filter,
            limit=top_k * CHUNKS_PER_SOURCE,
        )
    )
    evidence = PAGE_EVIDENCE if dense is None else HYBRID_PAGE_EVIDENCE
    return group_sections(hits, top_k, evidence)


def fit_budget(
    sources: Sequence[Source], max_tokens: int, model: str | None, *, estimate: bool = False
) -> list[Passage]:
    """Passages by score within `max_tokens`, the last one trimmed: counted by tiktoken in the
    model's encoding, or with `estimate` by `tokens.estimate_tokens` (no encoding built)."""
    from docent import tokens

    def count(text: str) -> int:
        return tokens.estimate_tokens(text) if estimate else tokens.count_tokens(text, model)

    encoding = None if estimate else tokens.encoding_name(model)

    def body_tokens(source: Source) -> int:
        # Counted at ingest in this encoding: no encoding of the text per question (5% of a
        # chat request's CPU in a profile of questions whose sections were new to the cache).
        if source.counted is not None and source.counted[0] == encoding:
            return source.counted[1]
        return count(source.text)

    def truncate(text: str, limit: int) -> str:
        if estimate:
            return tokens.truncate_estimated(text, limit)
        return tokens.truncate(text, limit, model)

    passages: list[Passage] = []
    left = max_tokens
    for source in sorted(sources, key=lambda s: s.score, reverse=True):
        header = count(f"[{source.id}] {source.title or ''} › {source.heading or ''}\n")
        if left - header < 16:
            break
        body = body_tokens(source)
        if header + body <= left:
            passages.append(source.passage())
            left -= header + body
        else:
            passages.append(source.passage(truncate(source.text, left - header)))
            break
    return passages
