"""Chunks: exact slices of their section, within the token limit, code kept whole, overlap."""

from __future__ import annotations

import itertools
import random

import pytest

from docent.chunking import chunk_document, section_text
from docent.parsing import parse
from docent.tokens import count_tokens

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi".split()


def generated(seed: int) -> str:
    rng = random.Random(seed)
    parts = [f"# Doc {seed}"]
    for s in range(rng.randint(1, 5)):
        parts.append(f"## Section {s}")
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.25:
                lines = "\n".join(f"value_{i} = compute({i})" for i in range(rng.randint(2, 60)))
                parts.append(f"```python\n{lines}\n```")
            else:
                sentences = [
                    " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25))) + "."
                    for _ in range(rng.randint(1, 15))
                ]
                parts.append(" ".join(sentences))
    return "\n\n".join(parts)


@pytest.mark.parametrize("seed", range(40))
def test_chunks_are_exact_slices_within_the_limit(seed: int) -> None:
    doc = parse(generated(seed), "markdown")
    chunks = chunk_document(doc, max_tokens=80, overlap_tokens=15)

    assert [c.position for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        text = section_text(doc.sections[chunk.section])
        assert text[chunk.start : chunk.start + len(chunk.text)] == chunk.text
        assert chunk.text.strip() == chunk.text and chunk.text
        assert chunk.tokens == count_tokens(chunk.text) <= 80
        assert chunk.headings == doc.sections[chunk.section].headings


@pytest.mark.parametrize("seed", range(40))
def test_code_blocks_that_fit_are_never_split(seed: int) -> None:
    doc = parse(generated(seed), "markdown")
    chunks = chunk_document(doc, max_tokens=120, overlap_tokens=20)
    for index, section in enumerate(doc.sections):
        texts = [c.text for c in chunks if c.section == index]
        for block in section.blocks:
            if block.kind == "code" and count_tokens(block.text) <= 120:
                assert any(block.text in t for t in texts), block.text[:40]


def test_consecutive_chunks_of_a_section_overlap() -> None:
    text = "# T\n\n" + " ".join(f"Sentence number {i} is here." for i in range(120))
    doc = parse(text, "markdown")
    chunks = chunk_document(doc, max_tokens=60, overlap_tokens=15)
    assert len(chunks) > 3
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.start + len(a.text), "no overlap"
        shared = a.start + len(a.text) - b.start
        assert 0 < count_tokens(a.text[-shared:]) <= 20


def test_chunks_never_cross_headings_and_empty_sections_vanish() -> None:
    doc = parse("# A\n\none\n\n## Empty\n\n## B\n\ntwo", "markdown")
    chunks = chunk_document(doc, max_tokens=100, overlap_tokens=10)
    assert [(c.text, c.headings, c.anchor) for c in chunks] == [
        ("one", ("A",), "a"),
        ("two", ("A", "B"), "b"),
    ]


def test_a_code_block_larger_than_the_limit_splits_on_lines() -> None:
    code = "```\n" + "\n".join(f"line_{i} = {i}" for i in range(200)) + "\n```"
    doc = parse(f"# Big\n\n{code}", "markdown")
    chunks = chunk_document(doc, max_tokens=50, overlap_tokens=0)
    assert len(chunks) > 5
    assert all(c.tokens <= 50 for c in chunks)
    assert all(c.text.splitlines()[-1].startswith(("line_", "```")) for c in chunks)


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_token_offsets_are_tiktokens_own(name: str) -> None:
    """`token_offsets` gives what tiktoken's `decode_with_offsets` gives, characters split
    across tokens (emoji, CJK, accents) included."""
    from docent.chunking import token_offsets
    from docent.tokens import _encoding

    encoding = _encoding(name)
    texts = [
        "",
        "plain ASCII text, with code: `pip install acme-server`\n\n```py\nx = 1\n```",
        "Café naïve façade — “quoted” and déjà vu",
        "日本語のテキストと English mixed 中文字符",
        "emoji 👩‍👩‍👧‍👦 and 🇫🇷 flags, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math, e\u0301 combining",
        "ünïcödé " * 50 + "🙂" * 30,
    ]
    split = 0  # tokens that start inside a character: the case the offsets must round down
    for text in texts:
        tokens = encoding.encode(text, disallowed_special=())
        assert token_offsets(encoding, tokens) == encoding.decode_with_offsets(tokens)[1], text
        split += sum(0x80 <= b[0] < 0xC0 for b in encoding.decode_tokens_bytes(tokens))
    assert split >= 10


@pytest.mark.parametrize("seed", range(40))
def test_a_chunk_cut_inside_a_long_code_block_merges_into_whole_markdown(seed: int) -> None:
    from docent.retrieval import merge_text
    from docent.sentences import blocks

    # GIVEN documents whose code blocks run to 60 lines, longer than an 80-token chunk
    doc = parse(generated(seed), "markdown")
    chunks = chunk_document(doc, max_tokens=80, overlap_tokens=15)
    for chunk in chunks:
        # WHEN one chunk is a passage on its own, as retrieval merges it
        passage = merge_text([(chunk.start, chunk.text)], [(chunk.code_open, chunk.code_close)])
        # THEN its code is fenced code, closed, and none of it is read as prose
        for body, kind in blocks(passage):
            if kind == "code":
                assert body.startswith("```") and body.rstrip().endswith("```"), body
            else:
                assert "compute(" not in body, (seed, chunk.position, body)
    # AND a section merged whole from its chunks is its text, with no fence added
    for index, section in enumerate(doc.sections):
        own = [c for c in chunks if c.section == index]
        if own:
            flags = [(c.code_open, c.code_close) for c in own]
            merged = merge_text([(c.start, c.text) for c in own], flags)
            assert merged == section_text(section).strip()
