"""Sources as any client may show them: whatever a document's author wrote, nothing runs.

A document's title, headings and url come from its author (front matter, HTML, the ingest
request), and its text may hold markdown images that fetch from anywhere when rendered. The
widget escapes everything, but other clients of the JSON and SSE APIs may not, so the API
itself gives titles and headings as plain text, urls only as http(s), snippets without images.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

# A tag: one with attributes (`<x onerror=...>`: any element can carry a handler), or one an
# HTML parser knows; `List<T>` in a heading stays text. An unclosed tag runs to the end.
_TAG = re.compile(r"</?([a-zA-Z][\w:-]*)(\s[^>]*)?/?(>|$)")
_HTML_ELEMENTS = frozenset(
    "a abbr address area article aside audio b base bdi bdo blockquote body br button canvas "
    "caption cite code col colgroup data datalist dd del details dfn dialog div dl dt em embed "
    "fieldset figcaption figure footer form frame frameset h1 h2 h3 h4 h5 h6 head header hr html "
    "i iframe img input ins kbd label legend li link main map mark math menu meta meter nav "
    "noscript object ol optgroup option output p param picture pre progress q rp rt ruby s samp "
    "script search section select slot small source span strong style sub summary sup svg table "
    "tbody td template textarea tfoot th thead time title tr track u ul var video wbr".split()
)
_IMAGE = re.compile(r"!\[([^\]\n]*)\](?:\([^)\n]*\)|\[[^\]\n]*\])")
# An image cut off by the snippet's length limit, or never closed.
_OPEN_IMAGE = re.compile(r"!\[[^\]\n]*(\][(\[]?[^)\]\n]*)?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A control character or any whitespace (`\s` is `str.isspace`'s set): never inside a url.
_NOT_IN_URL = re.compile(r"[\x00-\x1f\x7f\s]")


def plain_text(value: str | None) -> str | None:
    """Markup-free text: entities decoded, tags and images removed; None if nothing is left."""
    if not value:
        return None
    text = _TAG.sub(_drop_tag, html.unescape(value))
    text = _IMAGE.sub(r"\1", text)
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text or None


def _drop_tag(match: re.Match[str]) -> str:
    if match[2] or match[1].lower() in _HTML_ELEMENTS:
        return " "
    return match[0]


def web_url(value: str | None) -> str | None:
    """The url when it is an absolute http or https url, else None (`javascript:`, `data:`...)."""
    if not value or _NOT_IN_URL.search(value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def imageless(text: str) -> str:
    """Markdown text without images (each becomes its alt text) or HTML image tags."""
    text = _IMAGE.sub(r"\1", text)
    text = _OPEN_IMAGE.sub("", text)
    return re.sub(r"<img\b[^>]*>?", "", text, flags=re.IGNORECASE)


def shown_source(source: Mapping[str, Any]) -> dict[str, Any]:
    """A public source with its author-written fields made safe to show (see the module)."""
    shown = dict(source)
    shown["title"] = plain_text(source.get("title"))
    shown["heading"] = plain_text(source.get("heading"))
    shown["url"] = web_url(source.get("url"))
    if isinstance(source.get("snippet"), str):
        shown["snippet"] = imageless(source["snippet"])
    return shown
