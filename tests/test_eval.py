"""The answer-quality benchmark, small: its scoring, and the invariants on real answers.

The real run uses Python's tutorial and HOWTO pages from the Debian package `python3.11-doc`
(fetched once into the eval cache) and the questions `make eval` asks about them, on BM25.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.eval import corpora
from bench.eval.run import (
    changed_samples,
    check_questions,
    load_questions,
    run_docent,
    samples,
    table,
)
from bench.eval.score import (
    Outcome,
    Question,
    calibration,
    leave_one_out,
    summarize,
    unfaithful_pieces,
)
from docent import sparse
from docent.edge import EdgeStore
from docent.generation import ANSWER_COVERAGE, LEXICAL_COVERAGE, LEXICAL_SCORE
from docent.ingest import DocumentIn, Ingestor
from docent.parsing import parse
from docent.retrieval import history_headings, retrieve
from docent.values import Usage
from docent.vectors import Query, SearchFilter

PAGE = "howto/sorting.html"


def question(qid: str, page: str | None, kind: str = "keyword") -> Question:
    return Question(qid, kind, f"question {qid}", page, ("key-functions",), ("key=",))


def test_ranks_recall_and_mrr_count_the_expected_page() -> None:
    outcomes = [
        Outcome(question("a", PAGE), pages=[PAGE, "x"], anchors=["key-functions", None]),
        Outcome(question("b", PAGE), pages=["x", "y", PAGE], anchors=[None, None, "other"]),
        Outcome(question("c", PAGE, "paraphrase"), pages=["x"], anchors=[None]),
    ]
    figures = summarize(outcomes)
    assert figures["recall_at_1"] == 0.333
    assert figures["recall_at_5"] == 0.667
    assert figures["mrr"] == round((1 + 1 / 3) / 3, 3)
    assert figures["anchor_at_5"] == 0.333  # b found the page but not its section
    assert figures["anchor_exact"] == 0.5
    assert figures["by_kind"]["paraphrase"]["recall_at_5"] == 0.0


def test_answered_precision_and_recall_count_unanswerable_questions() -> None:
    outcomes = [
        Outcome(question("a", PAGE), pages=[PAGE], answered=True, answer="use key= [S1]"),
        Outcome(question("b", PAGE), pages=[PAGE], answered=False, answer="no"),
        Outcome(question("u", None, "unanswerable"), pages=[PAGE], answered=True, answer="x"),
        Outcome(question("v", None, "unanswerable"), pages=[PAGE], answered=False, answer="x"),
    ]
    answered = summarize(outcomes)["answered"]
    assert answered["precision"] == 0.5
    assert answered["recall"] == 0.5
    assert answered["unanswerable_answered"] == 1


def test_a_cited_sentence_missing_from_its_source_is_caught() -> None:
    passages = {"S1": "Sorting is stable.\n\nThe key parameter takes a function.", "S2": "Other."}
    assert (
        unfaithful_pieces("Sorting is stable. The key parameter takes a function. [S1]", passages)
        == []
    )
    assert unfaithful_pieces("The key parameter takes a function. [S2]", passages) == [
        "The key parameter takes a function."
    ]
    # The link filter's redaction of a foreign URL stands for that URL, nothing else.
    linked = {"S1": "Fetch it with urlopen('http://example.org/a') here."}
    assert unfaithful_pieces("Fetch it with urlopen('[link removed]') here. [S1]", linked) == []
    assert unfaithful_pieces("Fetch it with [link removed] now. [S1]", linked) != []
    # An autolink's redaction takes its angle brackets with it (Requests' Link header example)
    header = {"S1": "'<https://api.example.com/r?page=2>; rel=\"next\", <https://x.io/r>; rel=x'"}
    redacted = "'[link removed]; rel=\"next\", [link removed]; rel=x' [S1]"
    assert unfaithful_pieces(redacted, header) == []
    assert unfaithful_pieces("'[link removed]; rel=\"prev\"' [S1]", header) != []
    invented = "Sorting is stable. Sorting is also parallel. [S1]"
    assert unfaithful_pieces(invented, passages) == ["Sorting is also parallel."]


def test_a_question_naming_a_missing_anchor_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text('<section id="key-functions"><h2>Key</h2></section>')
    check_questions([question("a", "p.html")], {"p.html": page})
    bad = Question("b", "keyword", "q", "p.html", ("no-such-section",), ())
    with pytest.raises(SystemExit, match="no anchor no-such-section"):
        check_questions([bad], {"p.html": page})


def test_the_table_reports_held_out_sets_apart_from_the_tuning_sets() -> None:
    # GIVEN one system's figures on two tuning sets and a held-out one
    tuned = summarize([Outcome(question("a", PAGE), pages=[PAGE])])
    held = summarize([Outcome(question("b", PAGE), pages=["x", PAGE])])
    costs = {"chunks": 10, "ingest_s": 1.0}
    results = {
        "sets": {
            "drf": {"pool": "tuning"},
            "python": {"pool": "tuning"},
            "flask": {"pool": "held out"},
            "aiohttp": {"pool": "fresh"},
        },
        "systems": {
            "docent-bm25": {
                "costs": {
                    "drf": costs,
                    "python": costs,
                    "flask": costs | {"chunks": 7},
                    "aiohttp": costs | {"chunks": 3},
                },
                "all": tuned,
                "heldout": held,
                "fresh": tuned,
            }
        },
    }
    # WHEN the table is written
    rows = table(results).splitlines()[2:]
    # THEN the held-out row follows, then the fresh one, each with its own recall and ingest cost
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| docent-bm25", "1.00", "1.00"],
        ["| docent-bm25, held out", "0.00", "1.00"],
        ["| docent-bm25, fresh", "1.00", "1.00"],
    ]
    assert "2.0 (20)" in rows[0] and "1.0 (7)" in rows[1] and "1.0 (3)" in rows[2]
    # AND the Flask and Click questions exist and name real pages' anchors (checked at run time)
    pools = {c.name: c.pool for c in corpora.CORPORA}
    assert pools == {"drf": "tuning", "python": "tuning", "flask": "held out",
                     "click": "held out", "aiohttp": "fresh", "markdown": "fresh",
                     "coverage": "third pair", "mkdocs": "third pair",
                     "requests": "fourth pair", "guizero": "fourth pair",
                     "jinja": "fifth pair", "structlog": "fifth pair"}  # fmt: skip
    assert len(load_questions("flask")) + len(load_questions("click")) >= 40
    pairs = (("aiohttp", "markdown"), ("coverage", "mkdocs"), ("requests", "guizero"),
             ("jinja", "structlog"))  # fmt: skip
    for pair in pairs:
        fresh = load_questions(pair[0]) + load_questions(pair[1])
        assert len(fresh) >= 50 and sum(not q.answerable for q in fresh) >= 10


def test_a_rerun_names_the_sampled_answers_the_readme_must_read_again() -> None:
    # GIVEN the README's samples (ten a pool, chosen by rule): the tuning sets' every ninth
    # answerable question, as the README lists them
    chosen = samples()
    assert chosen["tuning"][:5] == ["drf-01", "drf-10", "drf-19", "drf-28", "drf-37"]
    assert chosen["held out"][-1] == "flask-19"
    assert chosen["fifth pair"][0] == "jinja-01" and chosen["fifth pair"][-1].startswith(
        "structlog"
    )
    assert all(len(ids) == 10 for ids in chosen.values())
    # WHEN a rerun changes one sampled answer, one answer outside the samples, and one sampled
    # answer of another system
    ids = chosen["tuning"] + chosen["third pair"] + ["drf-02"]
    before = {
        "docent-hybrid": [{"id": i, "answer": "old"} for i in ids],
        "docent-bm25": [{"id": "py-28", "answer": "old"}],
    }
    after = {
        "docent-hybrid": [
            {"id": i, "answer": "new" if i in ("py-28", "drf-02") else "old"} for i in ids
        ],
        "docent-bm25": [{"id": "py-28", "answer": "new"}],
    }
    # THEN only the sampled hybrid answer is named, under its pool
    assert changed_samples(before, after) == {"tuning": ["py-28"]}
    assert changed_samples({}, after) == {}


def test_a_threshold_chosen_on_the_other_pools_is_scored_on_the_one_left_out() -> None:
    def found(evidence: float, answerable: bool, *unknown: str) -> Outcome:
        q = question(f"q{evidence}{answerable}", PAGE if answerable else None)
        return Outcome(q, pages=[], evidence=evidence, unknown_names=unknown)

    # GIVEN two pools that agree answerable questions cover 0.3 or more, and a third whose
    # answerable questions cover less
    pools = {
        "a": [found(0.5, True), found(0.3, True), found(0.2, False)],
        "b": [found(0.4, True), found(0.25, False), found(0.6, False, "Heroku")],
        "c": [found(0.22, True), found(0.5, True), found(0.1, False)],
    }
    # THEN a question naming what the docs never mention is unanswered at any threshold
    assert calibration(pools["b"], [0.2]) == [{"threshold": 0.2, "precision": 0.5, "recall": 1.0}]
    # AND each pool is scored at the threshold the other two choose (the best F1 there)
    out = leave_one_out(pools, [0.2, 0.3, 0.4])
    assert out["c"] == {"threshold": 0.3, "precision": 1.0, "recall": 0.5}
    assert out["a"]["threshold"] == 0.2 and out["a"]["recall"] == 1.0


def test_a_page_that_answers_as_fully_counts_as_a_hit() -> None:
    # GIVEN a question whose answer is on its page and, as fully, on a FAQ page
    q = Question("a", "keyword", "q", PAGE, (), (), also=("faq.html",))
    # THEN a source from either page is a hit at its rank, any other page is not
    assert Outcome(q, pages=["x", "faq.html", PAGE]).rank() == 2
    assert Outcome(q, pages=["x", "y"]).rank() is None


def test_an_mkdocs_site_with_directory_urls_links_each_page_as_its_folder() -> None:
    site = corpora.by_name(["markdown"])[0]
    assert site.url("extensions/toc.html") == "https://python-markdown.github.io/extensions/toc/"
    assert site.url("index.html") == "https://python-markdown.github.io/"
    sphinx = corpora.by_name(["aiohttp"])[0]
    assert sphinx.url("testing.html") == "https://docs.aiohttp.org/en/v3.8.4/testing.html"
    with pytest.raises(ValueError, match="pool"):
        corpora.Corpus("x", "p", "r", (), (), "https://x/", pool="blind")


@pytest.fixture(scope="module")
def python_docs() -> dict[str, Path]:
    corpus = corpora.by_name(["python"])[0]
    return corpora.pages(corpus)


@pytest.mark.slow
def test_real_answers_cite_only_what_their_sources_say(
    python_docs: dict[str, Path], tmp_path: Path
) -> None:
    # GIVEN Python's tutorial and HOWTOs, and the eval's questions about them
    corpus = corpora.by_name(["python"])[0]
    questions = load_questions("python")
    check_questions(questions, python_docs)
    # WHEN Docent ingests the pages and answers every question (BM25, extractive)
    costs, outcomes = asyncio.run(run_docent("bm25", corpus, python_docs, questions, tmp_path))
    assert costs["pages"] == len(python_docs) and costs["chunks"] > len(python_docs)
    # THEN every sentence cited to a source is in that source's text, word for word
    for outcome in outcomes:
        assert outcome.unfaithful() == [], outcome.question.id
    # AND no question about a subject the docs never discuss is answered
    unanswerable = [o for o in outcomes if not o.question.answerable]
    assert len([o for o in unanswerable if not o.question.near]) >= 4
    assert [o.question.id for o in unanswerable if o.answered and not o.question.near] == []
    # AND near misses (the docs discuss something close) stay rare among the answers
    assert summarize(outcomes)["answered"]["precision"] >= 0.9
    # AND answerable questions mostly are, with the expected page among the sources
    answerable = [o for o in outcomes if o.question.answerable]
    answered = [o for o in answerable if o.answered]
    assert len(answered) >= 0.9 * len(answerable)
    assert sum(o.rank() is not None for o in answerable) >= 0.9 * len(answerable)


@pytest.mark.slow
def test_the_eval_sets_changelogs_are_known_by_their_headings() -> None:
    # GIVEN the documentation sets of `make eval`, as their Debian packages ship them
    found = set()
    for corpus in corpora.CORPORA:
        for page, path in corpora.pages(corpus).items():
            # WHEN each page is parsed as ingest parses it
            parsed = parse(path.read_text(), "html")
            if history_headings(s.headings for s in parsed.sections):
                found.add(f"{corpus.name}:{page}")
    # THEN exactly their changelogs read as history pages, whatever their names (Requests files
    # its release history as "Community Updates"); no guide, tutorial or reference does
    assert found == {
        "click:changes.html",
        "coverage:changes.html",
        "drf:community/release-notes/index.html",
        "flask:changes.html",
        "guizero:changelog.html",
        "jinja:changes.html",
        "mkdocs:about/release-notes.html",
        "requests:community/updates.html",
    }


@pytest.mark.slow
async def test_a_changelog_named_otherwise_ranks_below_the_guide(tmp_path: Path) -> None:
    # GIVEN Requests 2.28.1's docs (python-requests-doc), whose changelog is "Community Updates"
    pages = corpora.pages(corpora.by_name(["requests"])[0])
    store = EdgeStore(str(tmp_path / "edge"))
    ingestor = Ingestor(store, None, chunk_tokens=350, overlap_tokens=50, model=None)
    # WHEN the pages are ingested
    for page, path in pages.items():
        await ingestor.ingest([DocumentIn(id=page, text=path.read_text(), format="html")])
    # THEN every chunk of the changelog is marked as history, and no other page's chunk is
    hits = await store.search(Query(sparse.encode_query("requests"), limit=1000))
    marked = {h.chunk["document_id"] for h in hits if h.payload.get("history")}
    assert marked == {"community/updates.html"}
    assert all(h.payload.get("history") for h in hits if h.chunk["document_id"] in marked)
    # AND for one of the eval's questions, whose words the changelog matches best, the guide that
    # answers it comes first
    question = next(q for q in load_questions("requests") if q.id == "requests-11").question
    assert "multi-gigabyte backup files" in question
    (best,) = await store.search(Query(sparse.encode_query(question), limit=1))
    assert best.chunk["document_id"] == "community/updates.html"
    sources = await retrieve(
        store, None, question, top_k=5, search_filter=SearchFilter(), usage=Usage()
    )
    assert sources[0].document_id == "user/quickstart.html"
    await store.aclose()


@pytest.mark.slow
def test_long_questions_their_page_matches_strongly_are_answered(tmp_path: Path) -> None:
    # GIVEN Requests 2.28.1's docs (python-requests-doc) and the fourth pair's questions about
    # them, many opening with a sentence of context ("At work all HTTPS traffic goes through a
    # proxy that re-signs it ...")
    corpus = corpora.by_name(["requests"])[0]
    pages = corpora.pages(corpus)
    questions = load_questions("requests")
    # WHEN Docent answers them (BM25, extractive: the chat pipeline as served)
    _, outcomes = asyncio.run(run_docent("bm25", corpus, pages, questions, tmp_path))
    # THEN some answerable questions whose quoted run covers less than ANSWER_COVERAGE are
    # answered, each for its best source's strong BM25 score
    second = [o for o in outcomes if o.answered and (o.evidence or 0.0) < ANSWER_COVERAGE]
    assert len(second) >= 4
    assert all(o.lexical >= LEXICAL_SCORE and o.evidence >= LEXICAL_COVERAGE for o in second)
    assert all(o.question.answerable for o in second)
    # AND most of them quote what answers them: the pagination question its Link headers, the
    # connect timeout question its tuple
    assert sum(o.has_expected() for o in second) >= 0.5 * len(second)
    answered = {o.question.id for o in second if o.has_expected()}
    assert {"requests-22", "requests-02"} <= answered
    # AND no unanswerable question is answered, nor any question whose evidence is weak
    assert [o.question.id for o in outcomes if o.answered and not o.question.answerable] == []
    assert not any(o.answered and (o.evidence or 0.0) < LEXICAL_COVERAGE for o in outcomes)
    weak = [o for o in outcomes if LEXICAL_COVERAGE <= (o.evidence or 0.0) < ANSWER_COVERAGE]
    assert not any(o.answered for o in weak if o.lexical < LEXICAL_SCORE)
