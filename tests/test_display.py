"""Source fields as any client may show them (docent.display)."""

from __future__ import annotations

import pytest

from docent.display import imageless, plain_text, shown_source, web_url


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("https://docs.example.com/a#b", "https://docs.example.com/a#b"),
        ("HTTP://docs.example.com", "HTTP://docs.example.com"),
        ("javascript:alert(1)", None),
        ("JavaScript:alert(1)", None),
        (" javascript:alert(1)", None),
        ("java\tscript:alert(1)", None),
        ("\x01javascript:alert(1)", None),
        ("https://docs.example.com/a\u00a0b", None),  # Unicode whitespace: no url has it
        ("https://docs.example.com/a\u2028b", None),
        ("https://docs.example.com/a\x7fb", None),
        ("data:text/html,<script>alert(1)</script>", None),
        ("vbscript:msgbox", None),
        ("//evil.example/x", None),
        ("/relative/path", None),
        ("https://", None),
        ("https://[::1", None),
        ("", None),
        (None, None),
    ],
)
def test_only_absolute_http_urls_are_shown(value: str | None, shown: str | None) -> None:
    assert web_url(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("<img src=x onerror=alert(1)>Billing", "Billing"),
        ("&lt;script&gt;alert(1)&lt;/script&gt; Exports", "alert(1) Exports"),
        ("<b>Bold</b> and <i>italic</i>", "Bold and italic"),
        ("<x-widget onclick=steal()>Custom", "Custom"),  # any element with attributes
        ("Vec<T> and Map<K, V>", "Vec<T> and Map<K, V>"),  # generics stay text
        ("a < b > c", "a < b > c"),
        ("![logo](https://evil.example/l.png) Title", "logo Title"),
        ("Unclosed <img src=x onerror=alert(1)", "Unclosed"),
        ("Line\nbreak\x00and\ttabs", "Line break and tabs"),
        ("<img src=x>", None),
        ("", None),
    ],
)
def test_titles_and_headings_are_plain_text(value: str, shown: str | None) -> None:
    assert plain_text(value) == shown


def test_snippets_lose_their_images_but_keep_the_alt_text() -> None:
    text = (
        "See ![the chart](https://evil.example/c.png) and ![ref][logo] here, "
        '<IMG SRC="https://evil.example/x.png"> and [a link](https://docs.example.com). '
        "Cut off: ![partial](https://evil.example/p"
    )
    assert imageless(text) == (
        "See the chart and ref here,  and [a link](https://docs.example.com). Cut off: "
    )


def test_a_shown_source_keeps_every_other_field() -> None:
    source = {"id": "S1", "document_id": "d", "title": "<b>T</b>", "url": "javascript:x",
              "heading": "H", "score": 0.5, "snippet": "![i](x) s"}  # fmt: skip
    assert shown_source(source) == {
        "id": "S1", "document_id": "d", "title": "T", "url": None, "heading": "H",
        "score": 0.5, "snippet": "i s",
    }  # fmt: skip
