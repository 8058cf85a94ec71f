"""Sources: one per section, merged text, deep links, the token budget."""

from __future__ import annotations

import pytest

from docent.parsing import parse
from docent.retrieval import (
    HISTORY_WEIGHT,
    PAGE_EVIDENCE,
    Source,
    deep_link,
    fit_budget,
    group_sections,
    history_headings,
    merge_text,
    page_name,
    rank_weight,
)
from docent.vectors import Hit
from tests.conftest import Docent, corpus_documents


def hit(doc: str, section: int, start: int, text: str, score: float, **payload: object) -> Hit:
    base = {"document_id": doc, "section": section, "start": start, "text": text}
    return Hit(f"{doc}-{section}-{start}", score, {**base, **payload})


def test_overlapping_chunks_merge_once() -> None:
    section = "alpha beta gamma delta epsilon zeta"
    a, b = section[0:16], section[11:28]
    assert merge_text([(11, b), (0, a)]) == section[0:28]
    assert merge_text([(0, a), (30, section[30:])]) == a + "\n…\n" + section[30:]
    assert merge_text([(0, section), (6, "beta")]) == section


def test_chunks_cut_inside_a_code_block_get_the_fences_they_lack() -> None:
    # GIVEN a code block of five lines, longer than a chunk: the first chunk ends inside it,
    # the last starts inside it, and the middle one (left out here) is neither's
    section = "Run:\n\n```\nline_1()\nline_2()\nline_3()\nline_4()\nline_5()\n```\n\nDone."
    first, last = section[:18], section[37:]
    assert first.endswith("line_1()") and last.startswith("line_4()")
    # WHEN merged, alone or together, THEN every run of code is fenced at both ends, and the
    # gap between them is marked outside the code
    assert merge_text([(0, first)], [(False, True)]) == first + "\n```"
    assert merge_text([(37, last)], [(True, False)]) == "```\n" + last
    both = merge_text([(37, last), (0, first)], [(True, False), (False, True)])
    assert both == first + "\n```\n…\n```\n" + last
    # AND chunks that meet at a line inside the code (no overlap starts there) join as one
    middle = section[19:36]
    assert middle == "line_2()\nline_3()"
    assert merge_text([(0, first), (19, middle)], [(False, True), (True, True)]) == (
        section[:36] + "\n```"
    )


def test_chunks_of_one_section_become_one_source() -> None:
    hits = [
        hit(
            "d",
            1,
            0,
            "one two",
            0.9,
            url="https://x/d",
            anchor="setup",
            headings=["Guide", "Setup"],
            title="D",
        ),
        hit("e", 0, 0, "other", 0.8),
        hit(
            "d",
            1,
            4,
            "two three",
            0.7,
            url="https://x/d",
            anchor="setup",
            headings=["Guide", "Setup"],
            title="D",
        ),
    ]
    sources = group_sections(hits, top_k=5)
    assert [(s.id, s.document_id) for s in sources] == [("S1", "d"), ("S2", "e")]
    assert sources[0].text == "one two three"
    assert sources[0].url == "https://x/d#setup"
    assert sources[0].heading == "Setup"
    assert sources[1].url is None and sources[1].heading is None
    assert len(group_sections(hits, top_k=1)) == 1


def test_sections_with_equal_scores_keep_one_order_whatever_order_the_engine_returns() -> None:
    # GIVEN fused scores that tie (first in one list and absent from the other, both ways), as
    # the engine returns them in one process and in another
    tied = [hit("b.html", 2, 0, "x", 1 / 61), hit("a.html", 5, 0, "y", 1 / 61),
            hit("a.html", 1, 0, "z", 1 / 61), hit("c.html", 0, 0, "w", 1 / 62)]  # fmt: skip
    orders = [tied, list(reversed(tied)), [tied[2], tied[0], tied[3], tied[1]]]
    # THEN the sources come out in the same order each time: by score, then page and section
    listed = {
        tuple((s.document_id, s.text) for s in group_sections(o, 4, page_evidence=0.0))
        for o in orders
    }
    assert listed == {(("a.html", "z"), ("a.html", "y"), ("b.html", "x"), ("c.html", "w"))}


def test_deep_links_replace_an_existing_fragment() -> None:
    assert deep_link("https://x/a#old", "new") == "https://x/a#new"
    assert deep_link("https://x/a", None) == "https://x/a"
    assert deep_link(None, "x") is None


def test_budget_keeps_the_best_passages_and_trims_the_last() -> None:
    from docent.tokens import count_tokens

    words = " ".join(f"word{i}" for i in range(400))
    sources = [
        Source("S1", "a", None, None, None, 0.5, words),
        Source("S2", "b", None, None, None, 0.9, "short text about the answer"),
    ]
    passages = fit_budget(sources, 200, None)
    assert [p.id for p in passages] == ["S2", "S1"]
    total = sum(count_tokens(p.text) + count_tokens(f"[{p.id}]  › \n") for p in passages)
    assert total <= 200
    assert words.startswith(passages[1].text) and len(passages[1].text) < len(words)
    assert fit_budget(sources, 5000, None)[1].text == words


def test_an_estimated_budget_builds_no_encoding() -> None:
    """The extractive answerer's budget: the same choice by score, counted without tiktoken."""
    from docent import tokens

    words = " ".join(f"word{i}" for i in range(400))
    sources = [
        Source("S1", "a", None, None, None, 0.5, words),
        Source("S2", "b", None, None, None, 0.9, "short text about the answer"),
    ]
    tokens._encoding.cache_clear()
    passages = fit_budget(sources, 200, None, estimate=True)
    assert tokens._encoding.cache_info().currsize == 0
    assert [p.id for p in passages] == ["S2", "S1"]
    total = sum(
        tokens.estimate_tokens(p.text) + tokens.estimate_tokens(f"[{p.id}]  › \n") for p in passages
    )
    assert total <= 200
    assert words.startswith(passages[1].text) and len(passages[1].text) < len(words)
    assert fit_budget(sources, 5000, None, estimate=True)[1].text == words


def test_changelog_pages_rank_below_a_guide_that_scores_close() -> None:
    # GIVEN a release-notes section that outscores the guide's section by less than half
    hits = [
        hit("community/release-notes/index.html", 0, 0, "Add throttle_scope.", 20.0,
            title="Release Notes - Django REST framework"),
        hit("api-guide/throttling/index.html", 2, 0, "Set throttle_scope on a view.", 15.0,
            title="Throttling - Django REST framework"),
        hit("community/3.4-announcement/index.html", 0, 0, "throttle_scope, much better.", 40.0),
    ]  # fmt: skip
    # WHEN they are grouped into sources
    sources = group_sections(hits, top_k=3)
    # THEN the guide ranks above the release notes that outscored it; a history page far
    # ahead stays ahead
    assert [s.document_id for s in sources] == [
        "community/3.4-announcement/index.html",
        "api-guide/throttling/index.html",
        "community/release-notes/index.html",
    ]
    assert [s.score for s in sources] == [20.0, 15.0, 10.0]


def test_an_api_reference_and_a_changes_page_rank_below_the_guide() -> None:
    # GIVEN Flask's autodoc API page and changelog (Sphinx names), each ahead of a guide section
    hits = [
        hit("api.html", 1, 0, "test_client(use_cookies=True)", 18.0,
            title="API — Flask Documentation (2.2.x)"),
        hit("changes.html", 4, 0, "Add test_client.", 17.0,
            title="Changes — Flask Documentation (2.2.x)"),
        hit("testing.html", 3, 0, "The test client makes requests.", 12.0,
            title="Testing Flask Applications — Flask Documentation (2.2.x)"),
    ]  # fmt: skip
    # WHEN they are grouped into sources
    sources = group_sections(hits, top_k=3, page_evidence=0.0)
    # THEN the guide leads; the reference and the changelog keep their order at half weight
    assert [(s.document_id, s.score) for s in sources] == [
        ("testing.html", 12.0),
        ("api.html", 9.0),
        ("changes.html", 8.5),
    ]


@pytest.mark.parametrize(
    ("document_id", "title", "weight"),
    [
        ("api.html", "API — Click Documentation (8.1.x)", 0.5),
        ("reference/index.html", "The Python Language Reference", 0.5),
        ("community/release-notes/index.html", "Release Notes", 0.5),
        ("history.html", None, 0.5),
        ("contributing.html", "Contributing to Python-Markdown", 0.5),
        ("authors.html", None, 0.5),
        ("code-of-conduct/index.html", None, 0.5),
        # guides whose names only contain such a word rank as they score
        ("client_reference.html", "Client Reference — aiohttp 3.8.4 documentation", 1.0),
        ("contributing-guide/index.html", None, 1.0),
        ("api-guide/throttling/index.html", "Throttling - Django REST framework", 1.0),
        ("topics/api-clients/index.html", "API Clients", 1.0),
        ("tutorial/modules.html", "6. Modules", 1.0),
        ("index.html", "Home", 1.0),
    ],
)
def test_rank_weight_reads_the_page_name(
    document_id: str, title: str | None, weight: float
) -> None:
    assert rank_weight({"document_id": document_id, "title": title}) == weight


@pytest.mark.parametrize(
    ("headings", "history"),
    [
        # the heading forms of the real changelogs of `make eval`'s ten sets
        (["Version 8.1.3", "Version 8.1.2", "Unreleased notes"], True),  # Click, Flask
        (["Community Updates", "GitHub", "2.28.1 (2022-06-29)", "2.28.0 (2022-06-09)"], True),
        (["1.4.0 - 2023-02-01", "1.3.0 - 2022-01-01", "1.2.0 - 2021-05-04"], True),  # guizero
        (["Versioning", "Upgrading", "3.14.0", "3.13.1", "3.13.0"], True),  # DRF
        (
            [
                "Change history",
                "Version 6.5.0 \u2014 2022-09-29",
                "Version 6.4.4 \u2014 2022-08-16",
            ],
            True,
        ),
        (["Upgrading", "Team", "Version 1.4.2 (2022-11-01)", "Features", "Fixes"], False),
        (["Upgrading", "Version 1.4.2 (2022-11-01)", "Features", "Version 1.4.1"], True),
        # section numbers are not versions, and two sections are not a history
        (["9. Classes", "9.1. A Word About Names and Objects", "9.2. Python Scopes"], False),
        (["16.1.1. Error Handling", "16.1.2. Executable Python Scripts", "16.1.3. Startup"], False),
        (["Version 2.0", "Version 1.0"], False),
        # numbered sections with a dash or colon before their words are not versions either
        (["1. Getting started", "1.1 - Installing", "1.2 - Configuring", "1.3: Running"], False),
        (["2.1 \u2013 Routing", "2.2 \u2013 Templates", "2.3, Static files"], False),
        # a heading that names a version is one, whatever words follow it
        (["Version 2.1 - Bug fixes", "Version 2.0 - New API", "v1.9: Docs overhaul"], True),
        (["Changelog", "2.0.0 (unreleased)", "1.0.0 - Unreleased", "0.9.0, 2021-03-02"], True),
        (["Installation", "Python 3.11 support", "Using version 2 of the API"], False),
    ],
)
def test_a_page_headed_with_versions_is_a_history_page(headings: list[str], history: bool) -> None:
    assert history_headings([(h,) for h in headings]) is history


def test_a_keep_a_changelog_file_is_a_history_page() -> None:
    # GIVEN a changelog in Keep a Changelog's format: each version's heading holds no text of its
    # own, only its "Added" / "Fixed" subsections do
    text = "# Changelog\n\nNotable changes.\n\n## [Unreleased]\n\n### Added\n\n- A thing.\n\n"
    for version in ("1.2.0] - 2019-03-01", "1.1.0] - 2019-02-15", "1.0.0] - 2017-06-20"):
        text += f"## [{version}\n\n### Added\n\n- More.\n\n### Fixed\n\n- Typos.\n\n"
    sections = parse(text, "markdown").sections
    assert {s.headings[-1] for s in sections} == {"Changelog", "Added", "Fixed"}
    # THEN its headings mark it as history; a guide with "Added" and "Fixed" sections is not
    assert history_headings(s.headings for s in sections)
    assert not history_headings([("Guide", "Added"), ("Guide", "Fixed"), ("Guide", "Upgrading")])


def test_a_page_marked_as_history_at_ingest_ranks_like_a_changelog_whatever_its_name() -> None:
    updates = {"document_id": "community/updates.html", "title": "Community Updates"}
    assert rank_weight(updates) == 1.0
    assert rank_weight({**updates, "history": True}) == HISTORY_WEIGHT


def test_a_page_name_is_its_file_stem_or_its_folder_for_an_index_page() -> None:
    assert page_name("api.html") == "api"
    assert page_name("api-guide/throttling/index.html") == "throttling"
    assert page_name("index.html") == "index"
    assert page_name("docs/changelog.md") == "changelog"


def test_a_page_with_a_second_matching_section_outranks_a_page_that_matches_once() -> None:
    # GIVEN a guide with two matching sections, and a tutorial section that scores a bit higher
    hits = [
        hit("tutorial/6-viewsets/index.html", 3, 0, "router.register(...)", 10.0),
        hit("api-guide/routers/index.html", 1, 0, "router.register(prefix, viewset)", 9.5),
        hit("api-guide/routers/index.html", 4, 0, "register a viewset", 6.0),
        hit("api-guide/routers/index.html", 1, 40, "the same section again", 9.0),
    ]
    # WHEN they are grouped into sources
    sources = group_sections(hits, top_k=3)
    # THEN the guide's best section leads, raised by a share of its page's next best section
    # (not by its own other chunk); the tutorial keeps its score
    assert [(s.document_id, s.score) for s in sources] == [
        ("api-guide/routers/index.html", 9.5 + PAGE_EVIDENCE * 6.0),
        ("tutorial/6-viewsets/index.html", 10.0),
        ("api-guide/routers/index.html", 6.0 + PAGE_EVIDENCE * 9.5),
    ]
    # AND with fused (hybrid) scores, where it is off, each section keeps its own best score
    fused = group_sections(hits, top_k=3, page_evidence=0.0)
    assert [s.score for s in fused] == [10.0, 9.5, 6.0]
    # AND each section's lexical evidence is the score BM25 alone ranks it by, whatever page
    # share the ranking used
    assert [s.lexical for s in sources] == [s.score for s in sources]
    assert [s.lexical for s in fused] == pytest.approx(
        [10.0, 9.5 + PAGE_EVIDENCE * 6.0, 6.0 + PAGE_EVIDENCE * 9.5]
    )


def test_fused_sections_keep_the_score_bm25_alone_gives_them() -> None:
    # GIVEN fused hits (scores between 0 and 1) with their BM25 arm's own scores: a changelog
    # section BM25 scores highest, a guide's two sections, and one only the dense arm found
    def fused(doc: str, section: int, score: float, lexical: float) -> Hit:
        return Hit(
            f"{doc}-{section}",
            score,
            {"document_id": doc, "section": section, "start": 0, "text": "t"},
            lexical,
        )

    hits = [
        fused("guide.html", 1, 0.95, 12.0),
        fused("changelog.html", 0, 0.90, 30.0),
        fused("guide.html", 2, 0.60, 5.0),
        fused("faq.html", 0, 0.55, 0.0),
    ]
    # WHEN they are grouped into sources
    sources = group_sections(hits, top_k=4, page_evidence=0.1)
    # THEN the order is the fused one (the changelog at half weight), and each section's
    # lexical evidence is what BM25 alone would score it: its page's weight, and PAGE_EVIDENCE
    # of its page's next section
    assert [s.document_id for s in sources] == [
        "guide.html",
        "guide.html",
        "faq.html",
        "changelog.html",
    ]
    assert [s.lexical for s in sources] == pytest.approx(
        [12.0 + PAGE_EVIDENCE * 5.0, 5.0 + PAGE_EVIDENCE * 12.0, 0.0, 30.0 * HISTORY_WEIGHT]
    )
    assert sources[0].score == pytest.approx(0.95 + 0.1 * 0.60)


@pytest.mark.parametrize("seed", range(20))
def test_a_snippet_reads_only_the_start_yet_equals_the_whole_texts_flattening(seed: int) -> None:
    import random

    from docent.retrieval import SNIPPET_CHARS, snippet

    rng = random.Random(seed)
    pieces = ["word", "a", "longerword", " ", "  ", "\n", "\n\n", "\t", " " * 50, "é"]
    text = "".join(rng.choice(pieces) for _ in range(rng.choice([10, 400, 5000])))
    flat = " ".join(text.split())
    expected = flat if len(flat) <= SNIPPET_CHARS else flat[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "…"
    assert snippet(text) == expected


def test_a_snippet_of_a_text_that_starts_with_a_long_whitespace_run_reads_on() -> None:
    from docent.retrieval import snippet

    text = "Intro" + " \n" * 2000 + "the rest of the section " * 20
    assert snippet(text).startswith("Intro the rest of the section the rest")
    assert snippet(text).endswith("…")


def test_ingest_counts_each_chunk_and_the_budget_reads_that_count(
    docent: Docent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk's payload holds its tiktoken count in the chat's encoding, counted once at
    ingest; a section of one chunk is then not encoded again for every question's budget."""
    from docent import tokens
    from docent.ingest import DocumentIn

    model = docent.services.token_model
    text = "\n\n".join(d["text"] for d in corpus_documents())
    prepared = docent.services.ingestor._prepare(DocumentIn("all.md", text), "digest", 0)
    payloads = [p.payload for p in prepared.points]
    assert len(payloads) > 3
    for payload in payloads:
        assert payload["encoding"] == tokens.encoding_name(model)
        assert payload["tokens"] == tokens.count_tokens(payload["text"], model)

    # One section of one chunk, one of two: only the merged one's text is counted here.
    one, (a, b) = payloads[0], payloads[1:3]
    hits = [Hit("1", 2.0, {**one, "section": 100}),
            Hit("2", 1.0, {**a, "section": 200}), Hit("3", 0.9, {**b, "section": 200})]  # fmt: skip
    sources = group_sections(hits, top_k=5)
    assert sources[0].counted == (tokens.encoding_name(model), one["tokens"])
    assert sources[1].counted is None
    counted: list[str] = []
    real = tokens.count_tokens
    monkeypatch.setattr(tokens, "count_tokens", lambda t, m=None: counted.append(t) or real(t, m))
    passages = fit_budget(sources, 100_000, model)
    assert [p.text for p in passages] == [s.text for s in sources]
    assert sources[1].text in counted and sources[0].text not in counted

    # A count in another encoding (the chat model changed since) is not trusted.
    other = Source("S1", "d", None, None, None, 1.0, one["text"], counted=("r50k_base", 1))
    fit_budget([other], 100_000, model)
    assert one["text"] in counted
