"""tiktoken offline: bundled encodings, the model's encoding, nothing downloaded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from docent import tokens


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken.load

    def refuse(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("tiktoken tried to download")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)


def test_gpt_4o_family_counts_offline_with_o200k(no_network: None) -> None:
    encoding = tokens.encoding_for("gpt-4o-mini")
    assert encoding.name == "o200k_base"
    # Token ids of o200k_base for this text, as OpenAI's tokenizer gives them.
    assert encoding.encode("Hello, world!") == [13225, 11, 2375, 0]
    assert tokens.count_tokens("Hello, world!", "gpt-4o-mini") == 4


def test_older_models_use_cl100k(no_network: None) -> None:
    assert tokens.encoding_for("gpt-4").name == "cl100k_base"
    assert tokens.encoding_for("gpt-4").encode("Hello, world!") == [9906, 11, 1917, 0]


def test_unknown_models_fall_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="docent.tokens"):
        assert tokens.encoding_for("smollm2-135m-instruct-test").name == "o200k_base"
    assert "smollm2-135m-instruct-test" in caplog.text


def test_truncate_keeps_whole_characters() -> None:
    text = "héllo wörld " * 50
    cut = tokens.truncate(text, 7)
    assert text.startswith(cut)
    assert tokens.count_tokens(cut) <= 7
    assert tokens.truncate("short", 100) == "short"


def test_bundled_files_match_tiktokens_expected_hashes() -> None:
    import hashlib

    from tiktoken_ext import openai_public

    source = (tokens.BUNDLED / ".complete").read_text()
    assert "o200k_base" in source and "cl100k_base" in source
    for line in source.splitlines():
        name, key = line.split()
        data = (tokens.BUNDLED / key).read_bytes()
        assert hashlib.sha256(data).hexdigest() in Path(openai_public.__file__).read_text(), name


def test_a_missing_encoding_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from docent.errors import ConfigurationError

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens._encoding.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="make encodings"):
            tokens.encoding_for(None)
    finally:
        tokens._encoding.cache_clear()


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_the_prepared_encodings_are_tiktokens_own(name: str) -> None:
    """The marshal fast path builds exactly the encoding tiktoken builds from the bundled file."""
    import tiktoken
    from tiktoken_ext import openai_public

    assert (tokens.BUNDLED / f"{name}.marshal").exists()
    tokens._encoding.cache_clear()
    fast = tokens._encoding(name)
    reference = tiktoken.Encoding(**getattr(openai_public, name)())
    assert fast._mergeable_ranks == reference._mergeable_ranks
    assert fast._special_tokens == reference._special_tokens
    assert fast._pat_str == reference._pat_str
    text = "Déployez 12345 fois: naïve <|endoftext|> code `x = y`\n\n  indented"
    assert fast.encode(text, disallowed_special=()) == reference.encode(text, disallowed_special=())


def test_an_unreadable_prepared_encoding_falls_back_to_the_bundled_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    key = dict(line.split() for line in (tokens.BUNDLED / ".complete").read_text().splitlines())
    shutil.copy(tokens.BUNDLED / key["o200k_base"], tmp_path / key["o200k_base"])
    (tmp_path / "o200k_base.marshal").write_bytes(b"\x00not marshal")
    monkeypatch.setattr(tokens, "BUNDLED", tmp_path)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens._encoding.cache_clear()
    try:
        assert tokens.count_tokens("hello world") == 2
    finally:
        tokens._encoding.cache_clear()
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def test_counts_of_passages_are_cached_and_exact_and_long_texts_are_not_held() -> None:
    from docent import tokens

    passage = "Rate limits are set per tier with RATE_LIMIT_ANON and RATE_LIMIT_KEY. " * 20
    exact = len(tokens.encoding_for(None).encode(passage, disallowed_special=()))
    tokens._cached_count.cache_clear()
    assert [tokens.count_tokens(passage) for _ in range(3)] == [exact] * 3
    assert tokens._cached_count.cache_info().hits == 2  # counted once, then served

    long = "word " * (tokens.CACHED_TEXT_CHARS // 5 + 1)
    assert tokens.count_tokens(long) == len(tokens.encoding_for(None).encode(long))
    assert tokens._cached_count.cache_info().currsize == 1  # the long text is not held


def test_the_estimate_stays_near_the_exact_count_on_the_real_docs() -> None:
    """The extractive answerer's counts (no encoding): near o200k_base's on Docent's docs."""
    root = Path(__file__).resolve().parents[1]
    texts = [(root / "README.md").read_text()] + [
        path.read_text() for path in sorted((root / "docs").glob("*.md"))
    ]
    # Passage-sized windows: a file's last few characters ("asses).\n", 2 tokens against 3)
    # say nothing about a bound on passages of hundreds of tokens.
    windows = [text[i : i + 1500] for text in texts for i in range(0, len(text), 1500)]
    ratios = [tokens.estimate_tokens(w) / tokens.count_tokens(w) for w in windows if len(w) >= 500]
    assert len(ratios) > 50
    assert min(ratios) >= 0.8 and max(ratios) <= 1.2
    assert tokens.estimate_tokens("") == 0
    assert tokens.estimate_tokens("How do I install Docent?") == 6


def test_estimated_truncation_keeps_a_prefix_within_the_limit() -> None:
    text = "Alpha widgets are blue. Beta widgets are green, and gamma ones are red."
    cut = tokens.truncate_estimated(text, 5)
    assert text.startswith(cut) and tokens.estimate_tokens(cut) == 5
    assert cut == "Alpha widgets are blue."
    assert tokens.truncate_estimated(text, 500) == text
    assert tokens.truncate_estimated(text, 0) == ""
