"""Token counting with tiktoken, fully offline, in the encoding of the model in use.

tiktoken downloads its encoding files on first use; Docent bundles them instead (built by
`scripts/bundle_encodings.py` into `docent/encodings/`, under tiktoken's cache-key names) and
points TIKTOKEN_CACHE_DIR there, so nothing is fetched at import or at run time. tiktoken itself
is imported on first use, not at import (cold starts).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from docent.errors import ConfigurationError

if TYPE_CHECKING:
    import tiktoken

log = logging.getLogger(__name__)

BUNDLED = Path(__file__).parent / "encodings"
DEFAULT_ENCODING = "o200k_base"
_AVAILABLE = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def _cache_dir() -> str:
    """The folder tiktoken reads: the user's TIKTOKEN_CACHE_DIR, else the bundled files."""
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return configured
    os.environ["TIKTOKEN_CACHE_DIR"] = str(BUNDLED)
    return str(BUNDLED)


@lru_cache(maxsize=8)
def _encoding(name: str) -> tiktoken.Encoding:
    cached = (
        Path(_cache_dir())
        / hashlib.sha1(_AVAILABLE[name].encode(), usedforsecurity=False).hexdigest()
    )
    if not cached.exists():
        # Refuse rather than let tiktoken reach for the network.
        raise ConfigurationError(
            f"The {name} token encoding is not bundled at {cached.parent}: run `make encodings`."
        )
    import tiktoken

    prepared = BUNDLED / f"{name}.marshal"
    if cached.parent == BUNDLED and prepared.exists():
        # Shipped inside the package (scripts/bundle_encodings.py built it from the verified
        # file, so it is as trusted as the code): skips decoding 200k base64 ranks again.
        import marshal

        try:
            return tiktoken.Encoding(**marshal.loads(prepared.read_bytes()))  # noqa: S302
        except (ValueError, TypeError, EOFError) as exc:  # another Python's marshal format
            log.warning("prepared %s unreadable (%s): loading the bundled file", name, exc)
    return tiktoken.get_encoding(name)


@lru_cache(maxsize=64)
def encoding_name(model: str | None) -> str:
    """The encoding a model uses; unknown models fall back to o200k_base with a warning."""
    if model is None:
        return DEFAULT_ENCODING
    from tiktoken.model import encoding_name_for_model

    try:
        name = encoding_name_for_model(model)
    except KeyError:
        log.warning("tiktoken does not know model %r: counting with %s", model, DEFAULT_ENCODING)
        return DEFAULT_ENCODING
    if name not in _AVAILABLE:
        log.warning(
            "encoding %s of %r is not bundled: counting with %s", name, model, DEFAULT_ENCODING
        )
        return DEFAULT_ENCODING
    return name


def encoding_for(model: str | None = None) -> tiktoken.Encoding:
    """The tiktoken encoding for `model` (None: o200k_base, the gpt-4o family's)."""
    return _encoding(encoding_name(model))


# Texts up to this many characters have their counts cached: the same passages come back for
# question after question, and counting them was a tenth of a chat request's CPU.
CACHED_TEXT_CHARS = 16_384


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens in `text` under the model's encoding."""
    name = encoding_name(model)
    if len(text) <= CACHED_TEXT_CHARS:
        return _cached_count(name, text)
    return len(_encoding(name).encode(text, disallowed_special=()))


@lru_cache(maxsize=4096)  # at most 4,096 x 16 KB of text held: 64 MB worst case, ~4 MB typical
def _cached_count(name: str, text: str) -> int:
    return len(_encoding(name).encode(text, disallowed_special=()))


def truncate(text: str, max_tokens: int, model: str | None = None) -> str:
    """The longest prefix of `text` within `max_tokens` tokens, never splitting a character."""
    encoding = encoding_for(model)
    tokens = encoding.encode(text, disallowed_special=())
    if len(tokens) <= max_tokens:
        return text
    prefix = encoding.decode_bytes(tokens[: max(0, max_tokens)])
    return prefix.decode("utf-8", errors="ignore")


# tiktoken's pre-tokenizer, simplified: a word or a number (up to 3 digits) with the space before
# it, a run of punctuation with its space, or whitespace. Most English words are one token each.
_PIECES = re.compile(r" ?[^\W\d_]+| ?\d{1,3}| ?[^\w\s]+|\s+(?!\S)|\s+")


def estimate_tokens(text: str) -> int:
    """About how many tokens `text` holds, without an encoding: the pieces tiktoken's
    pre-tokenizer would cut it into. On Docent's own docs 0.86-1.08x o200k_base's exact count.

    For counts no model bills or limits: the extractive answerer's (it calls no model), so its
    first answer does not pay the 0.2 s of CPU that building o200k_base costs."""
    return len(_PIECES.findall(text))


def truncate_estimated(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` within `max_tokens` tokens by `estimate_tokens`."""
    if max_tokens <= 0:
        return ""
    for count, piece in enumerate(_PIECES.finditer(text), start=1):
        if count == max_tokens:
            return text[: piece.end()]
    return text
