"""Heading anchors as each docs generator makes them.

A style turns a document's headings, in order and as written, into (the text a reader sees, the
element id the generator gives that heading). The ids follow each generator's own code:
- `github`: github-slugger (GitHub's rendering and Docusaurus use it): lowercase, every character
  but letters, marks, digits, `_`, `-` and space dropped, spaces to `-`; repeats get `-1`, `-2`.
- `docusaurus`: the same slugger, plus the `{#custom-id}` syntax (stripped from the text).
- `mkdocs`: Python-Markdown's toc extension: its slugify (or pymdownx.slugs' variants) with the
  configured separator, attr_list ids (`{ #id .class }`, stripped) reserved first, repeats
  `_1`, `_2`, and an empty slug becomes `_1`.
- `plain`: Docent's own default: a GitHub-like slug, `{#id}` / `{ #id }` honoured and stripped.
- `html`: for HTML a site built: only the ids its headings (or their sections) carry, never a
  made-up slug; markdown under this style is read as `plain`.
A style travels with a document as `metadata["anchors"]` (its `spec()`), so the server that parses
the document gives the same anchors the site does.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

StyleName = Literal["plain", "github", "docusaurus", "mkdocs", "html"]
MkDocsSlug = Literal["toc", "toc-unicode", "pymdownx"]
STYLES: tuple[StyleName, ...] = ("plain", "github", "docusaurus", "mkdocs", "html")

# attr_list on a heading: at least one space, `{`, optional `:`, the list, `}` at the end.
_ATTR_LIST = re.compile(r"[ ]+\{:?[ ]*([^\}\n ][^\n]*)\}[ ]*$")
_ATTR_ID = re.compile(r"(?:^|\s)#([^\s}]+)")
# Docusaurus' classic syntax, exactly as @docusaurus/utils parses it.
_DOCUSAURUS_ID = re.compile(r"\s*\{#((?:.(?!\{#|\}))*.)\}$")
_DOCUSAURUS_COMMENT_ID = re.compile(r"\s*\{/\*\s*#(\S+?)(?:\s[^*]*)?\s*\*/\}$")
_MKDOCS_IDCOUNT = re.compile(r"^(.*)_([0-9]+)$")
_PYMDOWNX_INVALID = re.compile(r"[^\w\- ]")
_PYMDOWNX_TAGS = re.compile(r"</?[^>]*>")


@lru_cache(maxsize=1)
def _kept() -> tuple[list[int], list[int]]:
    from docent._slugger_table import KEPT

    starts, ends = [], []
    for item in "".join(KEPT).split():
        start, end = item.split("-")
        starts.append(int(start, 16))
        ends.append(int(end, 16))
    return starts, ends


def github_slug(text: str, maintain_case: bool = False) -> str:
    """github-slugger's slug of one heading (no repeat suffix)."""
    starts, ends = _kept()
    if not maintain_case:
        text = text.lower()
    out = []
    for char in text:
        code = ord(char)
        index = bisect.bisect_right(starts, code) - 1
        if index >= 0 and code <= ends[index]:
            out.append(char)
    return "".join(out).replace(" ", "-")


def plain_slug(text: str) -> str:
    """Docent's default slug: lowercase, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def toc_slug(text: str, separator: str = "-", unicode: bool = False) -> str:
    """Python-Markdown's `toc.slugify` (and `slugify_unicode` with `unicode=True`)."""
    if not unicode:
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(rf"[{re.escape(separator)}\s]+", separator, text)


def pymdownx_slug(
    text: str, separator: str = "-", case: str = "none", normalize: str = "NFC"
) -> str:
    """pymdownx.slugs' configurable `slugify(case=..., normalize=...)` (and `uslugify`)."""
    form: Any = normalize
    slug = _PYMDOWNX_TAGS.sub("", unicodedata.normalize(form, text) if normalize else text)
    slug = slug.strip()
    if case == "lower":
        slug = slug.lower()
    elif case == "lower-ascii":
        slug = re.sub(r"[A-Z]", lambda m: m.group(0).lower(), slug)
    elif case == "fold":
        slug = slug.casefold()
    return _PYMDOWNX_INVALID.sub("", slug).replace(" ", separator)


def attr_list_id(text: str) -> tuple[str, str | None, bool]:
    """(text without a trailing attr_list, its `#id` if any, whether a list was there)."""
    match = _ATTR_LIST.search(text)
    if not match:
        return text, None, False
    found = _ATTR_ID.findall(match.group(1))
    return text[: match.start()].rstrip(), (found[-1] if found else None), True


def docusaurus_id(text: str) -> tuple[str, str | None]:
    """(text without a trailing `{#id}` or `{/* #id */}`, the id) as Docusaurus reads them."""
    comment = _DOCUSAURUS_COMMENT_ID.search(text)
    if comment:
        return text[: comment.start()], comment.group(1)
    match = _DOCUSAURUS_ID.search(text)
    if not match:
        return text, None
    return text.replace(match.group(0), "", 1), match.group(1).strip()


@dataclass(frozen=True)
class AnchorStyle:
    """How one generator turns headings into element ids; see the module docstring."""

    name: StyleName = "plain"
    slug: MkDocsSlug = "toc"
    separator: str = "-"
    case: str = "none"
    normalize: str = "NFC"
    maintain_case: bool = False
    attr_list: bool = True

    @classmethod
    def from_spec(cls, spec: object) -> AnchorStyle:
        """A style from `metadata["anchors"]`: a name, or a dict of this class's fields."""
        if spec is None:
            return cls()
        if isinstance(spec, str) and spec in STYLES:
            return cls(name=spec)
        if isinstance(spec, dict) and spec.get("name") in STYLES:
            fields = {k: v for k, v in spec.items() if k in cls.__dataclass_fields__}
            if isinstance(fields.get("separator", "-"), str) and fields.get("slug", "toc") in (
                "toc",
                "toc-unicode",
                "pymdownx",
            ):
                return cls(**fields)
        return cls()

    def spec(self) -> dict[str, Any] | str:
        """What `from_spec` reads back: the name alone when every other field is the default."""
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if all(getattr(AnchorStyle(), k) == v for k, v in fields.items() if k != "name"):
            return self.name
        return fields

    def _slug(self, text: str) -> str:
        if self.name in ("github", "docusaurus"):
            return github_slug(text, self.maintain_case)
        if self.name == "mkdocs":
            if self.slug == "pymdownx":
                return pymdownx_slug(text, self.separator, self.case, self.normalize)
            return toc_slug(text, self.separator, unicode=self.slug == "toc-unicode")
        return plain_slug(text)

    def assign(self, headings: Sequence[tuple[int, str]]) -> list[tuple[str, str | None]]:
        """(visible text, anchor) for each (level, heading as written) of a document, in order."""
        if self.name == "mkdocs":
            return self._mkdocs([raw for _, raw in headings])
        seen: dict[str, int] = {}
        out: list[tuple[str, str | None]] = []
        for level, raw in headings:
            text, explicit = raw, None
            if self.name == "docusaurus":
                text, explicit = docusaurus_id(raw)
            elif self.name in ("plain", "html"):
                text, explicit, _ = attr_list_id(raw)
                if explicit is None:
                    text, explicit = docusaurus_id(text)
            text = text.strip()
            if explicit:
                out.append((text, explicit))
                continue
            base = self._slug(text)
            if self.name in ("plain", "html"):
                count = seen.get(base, 0)
                seen[base] = count + 1
                out.append((text, base if count == 0 else f"{base}-{count}"))
                continue
            # github-slugger: bump the base's counter until the slug is free.
            slug = base
            while slug in seen:
                seen[base] += 1
                slug = f"{base}-{seen[base]}"
            seen[slug] = 0
            # Docusaurus' theme renders h1 without an id, and no heading gets an empty one.
            hidden = self.name == "docusaurus" and level == 1
            out.append((text, None if hidden or not slug else slug))
        return out

    def _mkdocs(self, headings: Sequence[str]) -> list[tuple[str, str | None]]:
        if self.attr_list:
            parsed = [attr_list_id(raw) for raw in headings]
        else:
            parsed = [(raw, None, False) for raw in headings]
        # The toc extension reserves every id already in the page before it slugs any heading.
        used = {anchor for _, anchor, _ in parsed if anchor}
        out: list[tuple[str, str | None]] = []
        for text, explicit, _ in parsed:
            text = " ".join(text.split())
            if explicit:
                out.append((text, explicit))
                continue
            anchor = self._slug(text)
            while anchor in used or not anchor:
                match = _MKDOCS_IDCOUNT.match(anchor)
                anchor = f"{match[1]}_{int(match[2]) + 1}" if match else f"{anchor}_1"
            used.add(anchor)
            out.append((text, anchor))
        return out
