"""Answer generation: the `Answerer` protocol and the extractive answerer (the passages it sees
and the usage it reports are value types, in `docent.values`)."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from docent.sentences import Unit, table_parts, units
from docent.values import AnswerRequest as AnswerRequest
from docent.values import Message as Message  # the value types, re-exported where they were
from docent.values import Passage as Passage
from docent.values import Usage as Usage


class Answerer(Protocol):
    """Writes an answer from passages, streaming text deltas with `[Sn]` citations inline.

    Chat gathers the deltas into SSE frames at most one per `STREAM_FRAME_MS` (`chat.coalesced`)
    unless the answerer has a true `paced` attribute: its deltas come that far apart already.
    """

    model: str

    def stream(self, request: AnswerRequest) -> AsyncIterator[str]:
        """Yield answer text, filling `request.usage` as counts become known, done by its
        deadline."""
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


NOT_FOUND = (
    "I couldn't find the answer to that in the documentation. "
    "Try rephrasing the question, or browse the closest sections listed as sources."
)
# `answered` is decided by how much of the question the passages cover: the share of the
# question's term weight (rarer terms weigh more; a word no passage holds loses most of its
# weight, UNHELD_SHARE) that the best run of sentences finds with its section's heading path, in
# any passage (the quoted run is chosen with the heading's and the rank's counsel too, so it may
# cover a little less); and a question naming something the docs never mention is not answered
# (`AnswerRequest.unknown_names`). 0.40 was first derived on the two tuning sets of `make eval`.
# On all six sets (197 questions, 30 unanswerable; `calibration` in eval.json) it now gives
# precision / recall 0.93 / 0.91 with BM25 and 0.95 / 0.92 hybrid (before the two rules: 0.92 /
# 0.86 and 0.94 / 0.82). Lower thresholds trade precision for recall (0.30: 0.93 / 0.98 both);
# 0.40 keeps the largest worst margin over the targets (precision >= 0.95, recall >= 0.90).
# What still passes is a near miss whose every word the docs use ("How do I add a GraphQL
# endpoint to a Flask app?", and a testing example of Flask's posts to `/graphql`).
ANSWER_COVERAGE = 0.4
# How much of its rarity a question's word keeps when no passage holds it (see `excerpt`). On
# all six sets, at 0.40, BM25 (a sweep before the page weights of 2026-11-27, which moved it by a
# question): 0 gave precision / recall 0.93 / 0.93, 0.25 0.93 / 0.92, 0.5 0.94 / 0.90 and 1 (as
# before) 0.95 / 0.86; at 0 a package the docs never mention, written in lower case ("How do I
# plot a bar chart with matplotlib?" in Python's tutorial), counted as covered.
UNHELD_SHARE = 0.25
# Or a question is answered with less of it covered when retrieval's lexical evidence is strong:
# the best section's BM25 score (`AnswerRequest.lexical_score`) at least LEXICAL_SCORE and
# coverage at least LEXICAL_COVERAGE. A long question (a sentence of context before the one
# that asks) covers a small share of its words with any one run of sentences, yet matches its
# section with many rare words; most near misses match few (the unanswerable questions
# `make eval` answers score 2 to 30, 12 at the median). Chosen on the five pools of `make eval`
# (2026-11-29, both modes): pooled precision / recall BM25 0.930 / 0.854 to 0.935 / 0.927,
# hybrid 0.937 / 0.838 to 0.941 / 0.899, no unanswerable question more answered. Chosen on four
# pools (recall at precision 0.95, else precision), the pair is 0.26 to 0.28 and 17 to 18 for
# each fifth but the fourth pair (and the third, hybrid), and the pool left out gets about the
# same figures (`calibration.lexical` in eval.json). It only adds answers: a small site, whose
# BM25 scores run lower (its IDFs do), is answered as at ANSWER_COVERAGE alone.
LEXICAL_SCORE = 18.0
LEXICAL_COVERAGE = 0.28
MAX_WINDOW_UNITS = 3
# A bulleted list's item: its items are often independent (a function's parameters, options,
# tips), so a quote may start at the one that answers. A numbered list is steps, read from the
# first.
_BULLET = re.compile(r"\s*[-*+]\s")
MAX_CODE_LINES = 30
# How Sphinx opens a version note ("New in version 0.3.", "Changed in version 2.1: ...").
_VERSION_NOTE = r"(?:New|Changed) in version"
# A sentence that may continue a quote past its example: a whole sentence (not a label such as
# "Example: Asking a question", which heads the next example) and no version note.
_GOES_ON = re.compile(
    rf"^(?!\s*(?:{_VERSION_NOTE}|Deprecated since version)\b).*[.!?:][\"'”’)\]*_]*\s*$",
    re.DOTALL,
)
# What opens no quote: a version note alone ("New in version 0.3.") or a "See also" label, the
# page's bookkeeping before the sentence that says something.
_BOOKKEEPING = re.compile(
    rf"^\s*(?:{_VERSION_NOTE} [\w.]+\.?\s*$|\*\*See also:\*\*)", re.IGNORECASE
)
# A sentence that introduces the block after it ("... like this:", "For example.").
_INTRODUCES = re.compile(
    r"(:|\b(for example|for instance|as follows|like this|like so)\W?)\s*$", re.IGNORECASE
)
RANK_PENALTY = 0.1
# A section's heading is the docs' own word for what it answers: a run gains this share of the
# question's weight its section's heading covers. On `make eval` (BM25) it moved 6 answers of
# 89: 4 to the section the question is about (the heading "Setting the throttling policy" over
# a "UserRateThrottle" section that uses the question's words), 2 to worse sentences.
HEADING_BONUS = 0.5
LEAD_BONUS = 0.05
# The heading's words count for every run of its section, so among those runs the question's
# leftover words decide, and the leftover is often the verb of its frame ("write" in "How do I
# write a custom permission class?" picked the sentence on read and write requests over the one
# on overriding `BasePermission`): that verb names the task, rarely the docs' word for it. It
# counts for `answered` but not for which run is quoted.
_FRAME = re.compile(
    r"^\s*(?:how|where|when|why)\s+(?:do|can|should|would|could|might|must)\s+(?:i|we|you)"
    r"\s+(\w+)|^\s*how\s+to\s+(\w+)",
    re.IGNORECASE,
)
# A literal written in the question ("(?P<name>...)", "x**2") found as written in a sentence
# marks that sentence as the one about it: a run opening with it gains this share.
LITERAL_BONUS = 0.5
_LITERAL = re.compile(r"\S*[()<>\[\]{}=*?]\S*")
_IDENTIFIER = re.compile(
    r"`([^`]+)`"  # anything in backticks
    r"|\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?)"  # dotted: request.user, router.register
    r"|\b(\w*_\w+)\b"  # snake or constant case: add_note, DEFAULT_THROTTLE_RATES
    r"|\b([A-Z][a-z0-9]+[A-Z]\w*)\b"  # CamelCase: ScopedRateThrottle
    r"|\b([A-Za-z_]\w*)\(\)"  # a call: zip()
)


def identifiers(question: str) -> list[str]:
    """The code names a question asks about, as written."""
    names = []
    for match in _IDENTIFIER.finditer(question):
        name = next(g for g in match.groups() if g)
        if len(name) >= 3 and name not in names:
            names.append(name.strip("`"))
    return names


# A word of the question, and what ends a sentence before one (the word after starts a sentence).
_WORD = re.compile(r"[A-Za-z][\w+#]*")
_SENTENCE_END = (".", "?", "!", ":")


_SENTENCES = re.compile(r"(?<=[.?!])\s+")


def proper_names(question: str) -> list[str]:
    """The things a question asks about by name, as written: a word capitalised inside its
    sentence (Heroku, Kafka), with a capital after its first letter (GraphQL, reStructuredText)
    or an acronym (YAML, CSRF). A sentence's first word is capitalised by grammar, not as a name,
    and a question typed in capitals names nothing by its case.

    Only the sentences that ask (those ending in "?") are read when there are any: the others set
    the scene ("On our Ubuntu build box, ...", "Our readers are in France."), and what they name
    is not what the question is about. Of the third eval pair's 40 answerable questions, four
    named such a thing (CI, Ubuntu, USB, France) outside the sentence that asks, and were refused
    for it; none of the 40 unanswerable questions of all eight sets names its subject outside
    the sentence that asks."""
    letters = [c for c in question if c.isalpha()]
    if sum(c.isupper() for c in letters) * 2 > len(letters):
        return []
    sentences = _SENTENCES.split(question.strip())
    asking = [s for s in sentences if s.rstrip().endswith("?")] or [question]
    names = []
    for sentence in asking:
        for match in _WORD.finditer(sentence):
            word = match.group(0)
            before = sentence[: match.start()].rstrip()
            opening = not before or before.endswith(_SENTENCE_END)
            inner = any(c.isupper() for c in word[1:])
            if len(word) > 1 and (inner or (word[0].isupper() and not opening)):
                names.append(word)
    return names


def unmentioned_names(question: str, texts: Sequence[str]) -> list[str]:
    """The question's `proper_names` that none of `texts` holds as a word (any case)."""
    names = proper_names(question)
    if not names:
        return []
    text = "\n".join(texts).lower()
    return [name for name in names if not _holds_word(text, name.lower())]


def _holds_word(text: str, word: str) -> bool:
    """`word` is in `text` with no word character either side (str.find runs in C)."""
    at = text.find(word)
    while at >= 0:
        end = at + len(word)
        before = text[at - 1] if at else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
            return True
        at = text.find(word, at + 1)
    return False


def literals(question: str) -> list[str]:
    """The question's pieces of code syntax, as written: `(?P<name>...)`, `x**2`, `a[1:]`."""
    found = []
    for token in _LITERAL.findall(question):
        token = token.rstrip(",;:!?").strip("`'\"")
        symbols = sum(not c.isalnum() and c not in "_-." for c in token)
        if len(token) >= 4 and symbols >= 2 and any(c.isalnum() for c in token):
            found.append(token)
    return found


def answers(coverage: float, lexical_score: float = 0.0) -> bool:
    """Whether passages that cover `coverage` of the question, the best of them at
    `lexical_score` under BM25, answer it (the names rule aside)."""
    if coverage >= ANSWER_COVERAGE:
        return True
    return coverage >= LEXICAL_COVERAGE and lexical_score >= LEXICAL_SCORE


def _short(block: Unit) -> bool:
    """A code block short enough to quote whole (an example, not a listing)."""
    return block.text.count("\n") <= MAX_CODE_LINES


def _table_asked(table: Unit, asked: frozenset[int]) -> frozenset[int]:
    """The asked terms a table holds when a quote is chosen: its header's and its best row's,
    since its rows are independent (options, variables) and their words do not add up."""
    from docent import sparse

    head, rows = table_parts(table.text)
    best = max((sparse.terms(row) & asked for row in rows), key=len, default=frozenset())
    return best.union(*(sparse.terms(line) & asked for line in head))


def _table_rows(table: Unit, asked: frozenset[int], max_words: int) -> Unit:
    """`table` whole if it fits `max_words`; else its header, the delimiter row, and the rows
    holding the most `asked` terms as far as the budget goes (the first rows where none does)."""
    from docent import sparse

    if table.words <= max_words:
        return table
    head, rows = table_parts(table.text)
    held = [len(sparse.terms(row) & asked) for row in rows]
    # The rows holding the most asked terms first, as far as the budget goes; in table order.
    order = sorted((i for i in range(len(rows)) if held[i]), key=lambda i: -held[i])
    words = sum(len(line.split()) for line in head)
    kept: list[int] = []
    for i in order or range(len(rows)):
        words += len(rows[i].split())
        if words > max_words and kept:
            break
        kept.append(i)
    return replace(table, text="\n".join(head + [rows[i] for i in sorted(kept)]))


def _mid_list(previous: Unit, unit: Unit) -> bool:
    """`unit` is a list item after the first of its list."""
    return unit.kind == previous.kind == "item" and unit.block == previous.block


@dataclass(frozen=True)
class Excerpt:
    """What the extractive answer quotes: units of passages, in reading order, and its evidence."""

    units: list[tuple[int, Unit]]  # (passage index, unit), in answer order
    coverage: float  # share of the question's term weight the chosen section covers

    def text(self, passages: Sequence[Passage]) -> str:
        """Markdown: a block's sentences run together as a paragraph; each excerpt cited."""
        out: list[str] = []
        for p_index, group in itertools.groupby(self.units, key=lambda u: u[0]):
            pieces: list[str] = []
            previous: Unit | None = None
            for _, unit in group:
                text = " ".join(unit.text.split()) if unit.kind == "sentence" else unit.text
                joins = previous is not None and previous.kind == unit.kind == "sentence"
                if joins and previous is not None and previous.block == unit.block:
                    pieces[-1] += " " + text
                else:
                    pieces.append(text)
                previous = unit
            cite = f"[{passages[p_index].id}]"
            # The citation closes the excerpt; after a fenced block or a table it goes on its
            # own line (on a table's last row it would be a cell past the header's, not shown).
            fenced = pieces[-1].rstrip().endswith(("```", "~~~"))
            apart = fenced or (previous is not None and previous.kind == "table")
            pieces[-1] += f"\n\n{cite}" if apart else f" {cite}"
            out.append("\n\n".join(pieces))
        return "\n\n".join(out)


class ExtractiveAnswerer:
    """The embedded default: the best-matching section's own sentences, cited; nothing invented.

    Relevance is term overlap under BM25's own analysis (stemming, stopwords), each term weighted
    by its rarity among the retrieved units. The answer is one section's best run of consecutive
    sentences (up to `max_words`), in reading order; a code block is quoted whole when it holds
    a name the question asks about, or when the quoted run introduces it ("... like this:"); a
    short quote reads on past the example after it, to the sentences that say how.
    A numbered list is read from its first item, with the sentence that introduces it; a bulleted
    list (parameters, options) may be quoted from the item that matches. The question counts as
    answered when the best run covers ANSWER_COVERAGE of its weight, or less with strong BM25
    evidence (`answers`).
    """

    model = "extractive"

    def __init__(
        self, max_units: int = MAX_WINDOW_UNITS, max_words: int = 110, pace_s: float = 0.0
    ) -> None:
        self.pace_s = pace_s  # a pause between words, for a typed-out look (EXTRACTIVE_PACE_MS)
        self.max_units = max_units
        self.max_words = max_words

    def excerpt(self, question: str, passages: Sequence[Passage]) -> Excerpt | None:
        """The units to quote and the evidence for them; None when nothing matches at all."""
        import math

        from docent import sparse

        asked = sparse.terms(question)
        if not asked or not passages:
            return None
        parsed = [units(p.text) for p in passages]
        # The asked terms each unit holds; `matched` chooses the quote, where a table counts
        # its best row only (`_table_asked`), and `held` is the evidence for `answered`, where a
        # table counts whole (quotes, dashes and ellipses each in a row of SmartyPants' table).
        held = [[sparse.terms(u.text) & asked for u in us] for us in parsed]
        matched = [
            [
                _table_asked(u, asked) if u.kind == "table" else terms
                for u, terms in zip(us, hs, strict=True)
            ]
            for us, hs in zip(parsed, held, strict=True)
        ]
        frequency: dict[int, int] = {}
        for per_passage in held:
            for terms in per_passage:
                for term in terms:
                    frequency[term] = frequency.get(term, 0) + 1
        total = sum(len(us) for us in parsed) + 1
        weight = {t: 1.0 + math.log(total / (1 + frequency.get(t, 0))) for t in asked}
        # Each passage's title and heading path, and the asked terms some passage holds there or
        # in its text.
        contexts = [sparse.terms(" ".join(filter(None, [p.title, p.heading]))) for p in passages]
        mentioned = set(frequency).union(*contexts)
        # A word no passage holds is mostly the asker's own word for what the docs say otherwise
        # ("talkative" for verbose, "explodes" for memory use): weighed as the rarest, it kept
        # paraphrased questions from counting as answered, so it keeps UNHELD_SHARE of its
        # weight above the commonest's. A name is not such a word: one the docs never mention
        # (GraphQL, Heroku, YAML where they are never discussed) leaves the question unanswered
        # by itself (`unknown_names`).
        name_terms = set().union(*(sparse.terms(n) for n in proper_names(question)))
        for term in asked - mentioned - name_terms:
            weight[term] = 1.0 + UNHELD_SHARE * (weight[term] - 1.0)
        whole = sum(weight.values())
        code_names = identifiers(question)
        written = literals(question)
        frame = _FRAME.search(question)
        verb = sparse.terms(next(g for g in frame.groups() if g)) if frame else frozenset()

        best: tuple[float, int, int, int] | None = None  # (score, passage, first, last)
        best_cover = 0.0
        for p_index, (passage, us, context) in enumerate(
            zip(passages, parsed, contexts, strict=True)
        ):
            heading_terms = sparse.terms(passage.heading or "")
            heading = heading_terms & asked
            titled = bool(heading)
            # A page's opening section, headed with the page's own title, names the page, not a
            # section in it: its heading earns no bonus over the sections that follow.
            own = set() if sparse.terms(passage.title or "") == heading_terms else heading
            named = HEADING_BONUS * sum(weight[t] for t in own) / whole
            # The section's opening: its first unit after any bookkeeping.
            opening = next((i for i, u in enumerate(us) if not _BOOKKEEPING.match(u.text)), 0)
            for first in range(len(us)):
                if us[first].fragment or us[first].kind == "code":
                    continue
                if _BOOKKEEPING.match(us[first].text):
                    continue
                # A numbered list is read from its first item (or the sentence before it); a
                # bulleted one may be quoted from the item that answers, but only runs read from
                # a list's start count as coverage, so `answered` is decided as before. And a
                # run from a bulleted item is not chosen for the next items' words (it still
                # counts as coverage): they are independent, so the item before the one that
                # answers wins no quote by adding its own words to that one's.
                mid = first > 0 and _mid_list(us[first - 1], us[first])
                bulleted = us[first].kind == "item" and _BULLET.match(us[first].text) is not None
                if mid and not bulleted:
                    continue
                found: set[int] = set()
                evidence: set[int] = set()
                spans = False
                # A run that opens with the literal (the answer reads from there).
                literal = any(w in us[first].text for w in written)
                words = 0
                for last in range(first, min(len(us), first + self.max_units)):
                    unit = us[last]
                    if unit.kind == "code" or unit.fragment:
                        break
                    spans = spans or (bulleted and last > first and _mid_list(us[last - 1], unit))
                    words += unit.words
                    if words > self.max_words and last > first:
                        break
                    found |= matched[p_index][last]
                    evidence |= held[p_index][last]
                    if not matched[p_index][first] and not (first == opening and titled):
                        break  # a run starts at a match, or opens a section titled with one
                    covered = found | (context & asked)
                    cover = sum(weight[t] for t in evidence | (context & asked)) / whole
                    # Retrieval's order counts (it saw the whole section); a section's opening
                    # sentence often defines its subject. On a tie the earliest, shortest run
                    # wins: the reading continues from there.
                    score = (
                        sum(weight[t] for t in covered - verb) / whole
                        + LITERAL_BONUS * literal
                        + named
                        - RANK_PENALTY * p_index
                        + LEAD_BONUS * (first == opening)
                    )
                    if not spans and (best is None or score > best[0]):
                        best = (score, p_index, first, last)
                    if not mid:
                        best_cover = max(best_cover, cover)
        if best is None:
            return None
        _, p_index, first, last = best
        us = parsed[p_index]
        introduced = first > 0 and us[first - 1].kind == "sentence"
        if introduced and us[first].kind == "item" and _INTRODUCES.search(us[first - 1].text):
            first -= 1  # a list comes with the sentence that introduces it
        # Then read on in the section, as far as the word budget goes: the sentences after the
        # best match often hold the how (the setting's name, the directive, the example).
        words = sum(u.words for u in us[first : last + 1])
        while last + 1 < len(us):
            following = us[last + 1]
            if following.kind in ("code", "table") or following.fragment:
                break
            if words + following.words > self.max_words or _INTRODUCES.search(us[last].text):
                break
            words += following.words
            last += 1
        chosen = [(p_index, u) for u in us[first : last + 1]]
        after = us[last + 1] if last + 1 < len(us) else None
        # A run that ends "... like this:" brings the block it introduces.
        introduces = _INTRODUCES.search(us[last].text) is not None
        if after and not after.fragment and after.kind != "sentence" and introduces:
            chosen.append((p_index, after))
            # A list comes with its items, as far as the budget goes.
            items = us[last + 2 :] if after.kind == "item" else []
            for item in items:
                if item.kind != "item" or item.block != after.block or item.fragment:
                    break
                words += item.words
                if words > self.max_words:
                    break
                chosen.append((p_index, item))
        elif after and after.kind == "code" and not after.fragment and _short(after):
            # The example right after the quoted sentences is theirs (the request after
            # "the version goes in the URL path"), introduced or not.
            chosen.append((p_index, after))
            # A short quote reads on past it, to the sentences that say how and their block
            # (what the URL conf must hold, then the URL conf), as far as half the budget.
            at = last + 2
            while at < len(us) and words < self.max_words // 2:
                unit = us[at]
                if unit.kind != "sentence" or unit.fragment or not _GOES_ON.search(unit.text):
                    break
                words += unit.words
                chosen.append((p_index, unit))
                at += 1
                if at < len(us) and us[at].kind == "code":
                    if not us[at].fragment and _short(us[at]):
                        chosen.append((p_index, us[at]))
                    break
        elif code_names:
            code = self._code_with(code_names, passages, parsed, prefer=p_index)
            if code is not None and code[1] not in [u for _, u in chosen]:
                chosen.append(code)
        # A table longer than the budget (a reference of every option) is quoted by its header
        # and the rows that hold the asked words, each row as it is in the source.
        chosen = [
            (p, _table_rows(unit, asked, self.max_words) if unit.kind == "table" else unit)
            for p, unit in chosen
        ]
        seen: set[str] = set()
        unique = []
        for p, unit in chosen:
            key = " ".join(unit.text.split())
            if key not in seen:
                seen.add(key)
                unique.append((p, unit))
        unique.sort(key=lambda item: (item[0] != p_index, item[0], item[1].block))
        return Excerpt(unique, best_cover)

    @staticmethod
    def _code_with(
        names: Sequence[str], passages: Sequence[Passage], parsed: list[list[Unit]], prefer: int
    ) -> tuple[int, Unit] | None:
        """The first whole code block holding an asked name, the chosen section's first."""
        order = [prefer, *[i for i in range(len(passages)) if i != prefer]]
        for p_index in order:
            for unit in parsed[p_index]:
                whole = unit.kind == "code" and not unit.fragment
                if whole and _short(unit) and any(n in unit.text for n in names):
                    return p_index, unit
        return None

    def select(
        self,
        question: str,
        passages: Sequence[Passage],
        unknown_names: Sequence[str] = (),
        lexical_score: float = 0.0,
    ) -> Excerpt | None:
        """The excerpt the answer quotes, or None when the passages do not answer (or the
        question asks about a name the documentation never mentions)."""
        if unknown_names:
            return None
        excerpt = self.excerpt(question, passages)
        if excerpt is None or not answers(excerpt.coverage, lexical_score):
            return None
        return excerpt

    async def standalone_query(
        self, question: str, history: Sequence[Message], usage: Usage, deadline: float
    ) -> str:
        """Without a model, a follow-up borrows the terms of the previous user turn."""
        previous = [m.content for m in history if m.role == "user"]
        return f"{question}\n{previous[-1]}" if previous else question

    async def stream(self, request: AnswerRequest) -> AsyncIterator[str]:
        # No model is called, so no token is billed: the usage is estimated (what a model would
        # have read and written, within about 15%), and the answer needs no tiktoken encoding.
        from docent.tokens import estimate_tokens

        question, passages, usage = request.question, request.passages, request.usage
        excerpt = self.select(question, passages, request.unknown_names, request.lexical_score)
        text = NOT_FOUND if excerpt is None else excerpt.text(passages)
        usage.prompt_tokens += estimate_tokens(question) + sum(
            estimate_tokens(p.text) for p in passages
        )
        usage.completion_tokens += estimate_tokens(text)
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
