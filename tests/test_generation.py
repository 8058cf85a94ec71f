"""The citation filter and the extractive answerer."""

from __future__ import annotations

import time

import pytest

from docent.generation import (
    NOT_FOUND,
    CitationFilter,
    ExtractiveAnswerer,
    LinkFilter,
    Passage,
    Usage,
)


def run_filter(deltas: list[str], valid: list[str]) -> tuple[str, list[str]]:
    citations = CitationFilter(valid)
    text = "".join(citations.feed(d) for d in deltas) + citations.flush()
    return text, citations.cited


def test_valid_markers_pass_and_invented_ones_vanish() -> None:
    text, cited = run_filter(["Use pip [S1]. Or conda [S7].", " See [S2]."], ["S1", "S2"])
    assert text == "Use pip [S1]. Or conda . See [S2]."
    assert cited == ["S1", "S2"]


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_marker_split_across_deltas_is_held_until_complete(cut: int) -> None:
    whole = "Answer [S12] and [S3] end."
    text, cited = run_filter([whole[:cut], whole[cut:]], ["S3"])
    assert text == "Answer  and [S3] end."
    assert cited == ["S3"]


def test_lists_of_ids_are_normalised() -> None:
    text, cited = run_filter(["Both [S2, S1] and [S1; S9]."], ["S1", "S2"])
    assert text == "Both [S2][S1] and [S1]."
    assert cited == ["S2", "S1"]


def test_a_bracket_that_is_no_marker_is_not_held_forever() -> None:
    text, _ = run_filter(["array[", "0] = 1"], ["S1"])
    assert text == "array[0] = 1"


PASSAGES = [
    Passage(
        "S1",
        "Install",
        "Install with pip",
        "Install the package with pip:\n\n```bash\npip install acme\n```\n\n"
        "Then run `acme serve` to start it.",
        3.0,
    ),
    Passage(
        "S2",
        "Limits",
        "Sliding window",
        "Every token gets sixty requests per minute. Requests over the limit get a 429 status.",
        2.0,
    ),
]


async def answer(question: str, passages: list[Passage]) -> tuple[str, Usage]:
    usage = Usage()
    parts = [
        p
        async for p in ExtractiveAnswerer().stream(
            question, [], passages, usage, time.monotonic() + 5
        )
    ]
    return "".join(parts), usage


async def test_extractive_answer_cites_the_sentences_it_uses() -> None:
    text, usage = await answer("What status do requests over the limit get?", PASSAGES)
    assert "Requests over the limit get a 429 status. [S2]" in text
    assert "[S1]" not in text
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0


async def test_code_blocks_are_quoted_whole() -> None:
    text, _ = await answer("How do I install with pip?", PASSAGES)
    assert "```bash\npip install acme\n```" in text
    assert text.rstrip().endswith("[S1]")


async def test_nothing_relevant_means_not_found_and_no_citation() -> None:
    text, _ = await answer("Who painted the Mona Lisa?", PASSAGES)
    assert text == NOT_FOUND
    text, _ = await answer("What is it?", PASSAGES)  # only stopwords
    assert text == NOT_FOUND


def run_links(deltas: list[str], urls: list[str | None]) -> str:
    links = LinkFilter(urls)
    return "".join(links.feed(d) for d in deltas) + links.flush()


def test_images_never_pass_and_unknown_hosts_lose_their_links() -> None:
    urls = ["https://docs.acme.test/install#pip", None]
    text = run_links(
        [
            "See [the guide](https://docs.acme.test/limits) and ![x](https://evil.test/p.png?q=s",
            "ecret) or [click](https://evil.test/a). Visit https://evil.test/b now, ",
            "or <https://docs.acme.test/x>. [rel](/relative) [js](javascript:alert(1))",
        ],
        urls,
    )
    assert text == (
        "See [the guide](https://docs.acme.test/limits) and x or click. "
        "Visit [link removed] now, or <https://docs.acme.test/x>. [rel](/relative) js)"
    )
    assert "evil" not in text


@pytest.mark.parametrize("cut", range(1, 60, 3))
def test_links_split_across_deltas_are_judged_whole(cut: int) -> None:
    whole = "Go to [docs](https://docs.acme.test/a) not ![i](https://evil.test/i.png) end."
    assert run_links([whole[:cut], whole[cut:]], ["https://docs.acme.test/"]) == (
        "Go to [docs](https://docs.acme.test/a) not i end."
    )
