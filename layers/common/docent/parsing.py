"""Documents to sections: markdown/MDX, HTML, plain text, and PDF (as text).

A section is the run of blocks under one heading; its anchor is the slug a docs generator
(GitHub, Docusaurus) gives that heading, so a source can deep-link to it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from docent.errors import DocumentError

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token
    from selectolax.lexbor import LexborNode as Node

Format = Literal["markdown", "text", "html"]
BlockKind = Literal["text", "code", "table", "list"]

MAX_PDF_PAGES = 2000
MAX_PDF_CHARS = 5_000_000
PARSE_TIMEOUT_S = 60.0  # a file's default time budget (`PARSE_TIMEOUT_S`)
# Front matter: only title, url and tags are used, so a few kB is ample; the caps bound what
# YAML aliases can expand to (a 2 kB block of nested aliases expands to gigabytes).
MAX_FRONT_MATTER_BYTES = 16 * 1024
MAX_FRONT_MATTER_NODES = 1000
MAX_FRONT_MATTER_STRING = 2048
MAX_TAGS, MAX_TAG_CHARS = 50, 100
# Elements nested deeper than this are refused before the HTML parser sees them (its time
# grows with the square of the depth: 50,000 levels take 20 s); real pages stay below 100.
MAX_HTML_DEPTH = 256
_EXTENSIONS: dict[str, Format | Literal["pdf"]] = {
    ".md": "markdown", ".mdx": "markdown", ".markdown": "markdown",
    ".html": "html", ".htm": "html",
    ".txt": "text", ".text": "text",
    ".pdf": "pdf",
}  # fmt: skip


@dataclass(frozen=True)
class Block:
    text: str
    kind: BlockKind = "text"


@dataclass(frozen=True)
class Section:
    headings: tuple[str, ...]
    anchor: str | None
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class ParsedDocument:
    title: str | None
    sections: tuple[Section, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


def slugify(heading: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFKC", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


class _Sections:
    """Collects blocks under the current heading path, with unique anchors."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._anchor: str | None = None
        self._blocks: list[Block] = []
        self._seen: dict[str, int] = {}
        self._label: str | None = None  # an admonition's title, for the block after it

    def heading(
        self, level: int, text: str, anchor: str | None = None, *, assigned: bool = False
    ) -> None:
        """Open a section; `assigned` anchors (from an anchor style, maybe None) are final."""
        self._close()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, text))
        if assigned:
            self._anchor = anchor or None
            return
        base = anchor or slugify(text)
        count = self._seen.get(base, 0)
        self._seen[base] = count + 1
        self._anchor = base if count == 0 or anchor else f"{base}-{count}"

    def block(self, text: str, kind: BlockKind = "text") -> None:
        text = text.strip("\n")
        if not text.strip():
            return
        if self._label is not None and kind == "text":
            text, self._label = f"**{self._label}:** {text}", None
        self._flush_label()  # before a list, code or table the title stays a block of its own
        self._blocks.append(Block(text, kind))

    def label(self, title: str) -> None:
        """An admonition's title ("Note", "Warning"): it opens the next block, "**Note:** ...",
        rather than standing alone as a paragraph of one word."""
        self._flush_label()
        self._label = title.rstrip(":").strip() or None

    def _flush_label(self) -> None:
        if self._label is not None:
            self._blocks.append(Block(f"**{self._label}:**", "text"))
            self._label = None

    def _close(self) -> None:
        self._flush_label()
        if self._blocks:
            headings = tuple(t for _, t in self._path)
            self.sections.append(
                Section(headings, self._anchor if headings else None, tuple(self._blocks))
            )
        self._blocks = []

    def done(self) -> tuple[Section, ...]:
        self._close()
        return tuple(self.sections)


def parse(text: str, fmt: Format, anchors: object = None) -> ParsedDocument:
    """Split a document into sections of blocks, by its headings.

    `anchors` is a document's `metadata["anchors"]`: the generator whose heading ids (and
    explicit-id syntax) a markdown document's anchors follow (see `docent.anchors`).
    """
    if fmt == "markdown":
        return _markdown(text, anchors)
    if fmt == "html":
        try:
            return _html(text, ids_only=anchors == "html")
        except RecursionError as exc:  # a tree deeper than the depth estimate foresaw
            raise DocumentError("HTML nested too deeply to read.") from exc
    if fmt == "text":
        sections = _Sections()
        for paragraph in re.split(r"\n\s*\n", text):
            sections.block(paragraph)
        return ParsedDocument(None, sections.done())
    raise DocumentError(f"Unsupported format {fmt!r}: use markdown, text or html.")


# Markdown ------------------------------------------------------------------------------------

_MDX_STATEMENT = re.compile(r"^(import|export)\s.*$", re.MULTILINE)
_JSX_TAG = re.compile(r"^\s*</?[A-Z][\w.]*(\s[^>]*)?/?>\s*$", re.MULTILINE)
_FENCE_LINE = re.compile(r"^\s*(```|~~~)")


def _strip_mdx(text: str) -> str:
    """Drop MDX import/export lines and component tag lines (their inner text stays)."""
    out, in_fence = [], False
    for line in text.split("\n"):
        if _FENCE_LINE.match(line):
            in_fence = not in_fence
        if not in_fence and (_MDX_STATEMENT.match(line) or _JSX_TAG.match(line)):
            continue
        out.append(line)
    return "\n".join(out)


def _inline_text(token: Token) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts).strip()


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The front matter's fields and the body; within the caps above, or `DocumentError`."""
    import frontmatter

    text = text.strip()
    handler = frontmatter.detect_format(text, frontmatter.handlers)
    if handler is None:
        return {}, text
    try:
        raw, body = handler.split(text)
    except ValueError:
        return {}, text
    if len(raw.encode()) > MAX_FRONT_MATTER_BYTES:
        raise DocumentError(f"front matter larger than {MAX_FRONT_MATTER_BYTES} bytes.")
    try:
        loaded = handler.load(raw)
    except Exception:  # a malformed front matter block is kept as text, not fatal
        return {}, text
    if not isinstance(loaded, dict):
        return {}, body
    _check_front_matter(loaded)
    return loaded, body


def _check_front_matter(metadata: dict[Any, Any]) -> None:
    """Refuse front matter whose expanded size (aliases counted at each use) passes the caps."""
    nodes, stack = 0, [metadata]
    while stack:
        value = stack.pop()
        nodes += 1
        if nodes > MAX_FRONT_MATTER_NODES:
            raise DocumentError(
                f"front matter expands to more than {MAX_FRONT_MATTER_NODES} values "
                "(YAML aliases count at each use)."
            )
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list | tuple | set):
            stack.extend(value)
        elif isinstance(value, str) and len(value) > MAX_FRONT_MATTER_STRING:
            raise DocumentError(
                f"front matter holds a value longer than {MAX_FRONT_MATTER_STRING} characters."
            )
    tags = metadata.get("tags")
    tags = tags.split(",") if isinstance(tags, str) else tags
    if isinstance(tags, list):
        if len(tags) > MAX_TAGS:
            raise DocumentError(f"front matter has more than {MAX_TAGS} tags.")
        if any(not isinstance(t, str | int | float) for t in tags):
            raise DocumentError("front matter tags must be a list of words.")
        if any(len(str(t)) > MAX_TAG_CHARS for t in tags):
            raise DocumentError(f"front matter has a tag longer than {MAX_TAG_CHARS} characters.")


@lru_cache(maxsize=2)
def _markdown_parser(inline: bool) -> MarkdownIt:
    """CommonMark with tables, built once per process (not per document). Without `inline`,
    its block rules only: chunks are slices of the source, so only the headings need their
    inline markup parsed, not every paragraph, list item and table cell (40-50% less CPU)."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark").enable("table")
    return parser if inline else parser.disable("inline")


def _markdown(text: str, anchors: object = None) -> ParsedDocument:
    from docent.anchors import AnchorStyle

    metadata, body = _front_matter(text)
    body = _strip_mdx(body)
    lines = body.split("\n")
    env: dict[str, Any] = {}  # the link reference definitions, for the headings' links
    tokens = _markdown_parser(inline=False).parse(body, env)
    inline = _markdown_parser(inline=True).parseInline
    sections = _Sections()
    title = metadata.get("title") if isinstance(metadata.get("title"), str) else None
    kinds: dict[str, BlockKind] = {
        "fence": "code", "code_block": "code", "table_open": "table",
        "bullet_list_open": "list", "ordered_list_open": "list",
        "paragraph_open": "text", "blockquote_open": "text", "html_block": "text",
    }  # fmt: skip
    # Every heading takes an id (one in a blockquote or list too), so all go through the style.
    headings = [i for i, t in enumerate(tokens) if t.type == "heading_open"]
    raw = [
        (int(tokens[i].tag[1]), _inline_text(inline(tokens[i + 1].content, env)[0]))
        for i in headings
    ]
    assigned = dict(zip(headings, AnchorStyle.from_spec(anchors).assign(raw), strict=True))
    for index, token in enumerate(tokens):
        if token.level != 0 or token.map is None:
            continue
        if token.type == "heading_open":
            heading, anchor = assigned[index]
            if token.tag == "h1" and title is None:
                title = heading
            sections.heading(int(token.tag[1]), heading, anchor, assigned=True)
        elif token.type in kinds and token.map is not None:
            source = "\n".join(lines[token.map[0] : token.map[1]])
            if token.type == "html_block":
                source = re.sub(r"<[^>]+>", "", source)
            sections.block(source, kinds[token.type])
    return ParsedDocument(title, sections.done(), metadata)


# HTML ----------------------------------------------------------------------------------------

_DROP = "script, style, noscript, template, svg, nav, header, footer, form, iframe, head"
# Permalink markers inside headings (Sphinx and MkDocs `headerlink`, Docusaurus `hash-link`).
_PERMALINKS = "a.headerlink, a.hash-link"
# Site chrome that generators mark by role rather than by element (Sphinx sidebars, search boxes),
# and Sphinx's in-page table of contents (a `toctree`: every linked page's headings again, so an
# index page matched any question about them ahead of the page itself).
_CHROME = '[role="navigation"], [role="search"], [role="dialog"], div.toctree-wrapper'
# The page's own content, where the generator marks it: everything around it is chrome.
_MAIN = 'main, [role="main"], #main-content'
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


def _text(node: Node) -> str:
    """The node's words as a reader sees them: its text nodes joined as written (`_space_blocks`
    put a space where one block ends and the next begins), whitespace collapsed."""
    return " ".join(node.text(separator="").split())


# Elements a browser lays out as blocks (or breaks a line at): their text never runs on into the
# next one's. Inline markup (`<code>`, `<a>`, `<em>`) runs on: "Use `get`, then" stays one phrase
# with its comma in place, not "Use get , then".
_BLOCK_LEVEL = (
    "address, article, aside, blockquote, br, dd, details, div, dl, dt, figcaption, figure, "
    "h1, h2, h3, h4, h5, h6, hr, li, main, ol, p, pre, section, summary, table, td, th, tr, ul"
)
# Elements that hold blocks of their own when they hold any of these: Sphinx's autodoc puts a
# class's whole body (its paragraphs, examples and every method) in one `<dd>`.
_BLOCK_CHILDREN = (
    "p, div, dl, ul, ol, pre, table, blockquote, section, figure, h1, h2, h3, h4, h5, h6"
)
_INLINE = frozenset(
    "a abbr b bdi bdo cite code data del dfn em i img ins kbd label mark q s samp small span "
    "strong sub sup time u var wbr".split()
)


def _as_written(node: Node) -> str:
    """A text node's text, or an element's text nodes joined as written (no separator)."""
    return (node.text_content or "") if node.tag == "-text" else node.text(separator="")


def _collapsed(pieces: list[str]) -> str:
    """Pieces of one paragraph joined, whitespace collapsed."""
    return " ".join("".join(pieces).split())


def _space_blocks(root: Node) -> None:
    """A space before every block-level element, so that text joined as written keeps two
    blocks' words apart (selectolax joins text nodes with no separator)."""
    for node in root.css(_BLOCK_LEVEL):
        node.insert_before(" ")


_VOID = frozenset(
    "area base br col embed hr img input link meta param source track wbr "
    # End tags a parser infers: a run of unclosed <p> or <li> is siblings, not depth.
    "p li dt dd tr td th thead tbody tfoot option optgroup rb rt rp colgroup caption".split()
)
_TAG_EVENT = re.compile(r"<(/?)([a-zA-Z][\w:-]*)[^>]*?(/?)>")


def _html_depth_within(text: str, limit: int) -> bool:
    """Whether elements nest at most `limit` deep, by a linear scan of the tags (an estimate)."""
    depth = 0
    for closing, name, self_closing in _TAG_EVENT.findall(text):
        if self_closing or name.lower() in _VOID:
            continue
        if closing:
            depth = max(0, depth - 1)
        else:
            depth += 1
            if depth > limit:
                return False
    return True


def _html(text: str, ids_only: bool = False) -> ParsedDocument:
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    if not _html_depth_within(text, MAX_HTML_DEPTH):
        raise DocumentError(f"HTML elements nested more than {MAX_HTML_DEPTH} deep.")
    tree = HTMLParser(text)
    title_node = tree.css_first("title")
    title = _text(title_node) if title_node else None
    for node in tree.css(f"{_DROP}, {_CHROME}"):
        node.decompose()
    for node in tree.css(_PERMALINKS):
        node.decompose()
    sections = _Sections()
    root = tree.css_first(_MAIN) or tree.body or tree.root
    if root is not None:
        _space_blocks(root)
        _walk(root, sections, ids_only)
    if not title:
        first = tree.css_first("h1")
        title = _text(first) if first else None
    return ParsedDocument(title or None, sections.done())


def _pipe_table(table: Node) -> str:
    """The table as a GFM pipe table: its first row as the header (a table with no `<th>` has
    none, and GFM needs one), then the delimiter row, then the rest, short rows padded and a
    cell's own `|` escaped. So markdown renders it as a table, and the answerer knows it for one
    and quotes it whole, where rows of bare "a | b" read as one run-on sentence."""
    rows = [[_text(c).replace("|", "\\|") for c in row.css("th, td")] for row in table.css("tr")]
    rows = [row for row in rows if any(row)]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    lines = ["| " + " | ".join(row + [""] * (width - len(row))) + " |" for row in rows]
    lines.insert(1, "|" + " --- |" * width)
    return "\n".join(lines)


def _walk(node: Node, sections: _Sections, ids_only: bool = False) -> None:
    run: list[str] = []  # text and inline elements in a row, between blocks: one paragraph
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text" or (tag in _INLINE and child.css_first(_BLOCK_CHILDREN) is None):
            run.append(_as_written(child))
            continue
        sections.block(_collapsed(run))  # a blank paragraph adds no block
        run = []
        _visit(child, sections, ids_only)
    sections.block(_collapsed(run))


def _visit(child: Node, sections: _Sections, ids_only: bool) -> None:
    tag = child.tag
    if tag in _HEADINGS:
        anchor = child.attributes.get("id") or _section_id(child)
        sections.heading(_HEADINGS[tag], _text(child), anchor or None, assigned=ids_only)
    elif tag == "pre":
        sections.block("```\n" + (child.text(deep=True) or "").strip("\n") + "\n```", "code")
    elif tag in ("ul", "ol"):
        lines: list[str] = []
        _list(child, sections, lines, ids_only)
        sections.block("\n".join(lines), "list")
    elif tag == "table":
        sections.block(_pipe_table(child), "table")
    elif tag in ("blockquote", "dd") and child.css_first(_BLOCK_CHILDREN) is not None:
        _walk(child, sections, ids_only)
    elif tag == "p" and "admonition-title" in (child.attributes.get("class") or "").split():
        sections.label(_text(child))
    elif tag in ("p", "blockquote", "dd", "dt", "figcaption"):
        sections.block(_text(child))
    else:
        _walk(child, sections, ids_only)


def _list(
    node: Node, sections: _Sections, lines: list[str], ids_only: bool, indent: str = ""
) -> None:
    """A list's items into `lines` as markdown, each nested list indented under its item's text
    (once: an item's text leaves its nested lists out), an ordered list's numbered from its
    `start`. A code block or table in an item ends the list block there and follows as a block
    of its own; the list goes on after it."""
    number = _start(node) if node.tag == "ol" else None
    for li in node.iter():
        if li.tag != "li":
            continue
        run: list[str] = []
        marker = indent + ("- " if number is None else f"{number}. ")
        if number is not None:
            number += 1
        code = li.css_first("pre, table") is not None  # most items hold none: one query
        for child in li.iter(include_text=True):
            tag = child.tag
            nested = tag in ("ul", "ol")
            container = tag not in _INLINE and tag != "-text"
            holds_code = code and (
                tag in ("pre", "table") or (container and child.css_first("pre, table") is not None)
            )
            if not (nested or holds_code):
                run.append(_as_written(child))
                continue
            marker = _list_item(run, marker, lines)
            if nested:
                _list(child, sections, lines, ids_only, " " * len(marker))
            else:
                sections.block("\n".join(lines), "list")
                lines.clear()
                _visit(child, sections, ids_only)
        _list_item(run, marker, lines)


def _start(ol: Node) -> int:
    """The number an ordered list's first item shows."""
    try:
        return int(ol.attributes.get("start") or 1)
    except ValueError:
        return 1


def _list_item(run: list[str], marker: str, lines: list[str]) -> str:
    """The item's text so far as a line (emptying `run`); the marker for its next line."""
    text = _collapsed(run)
    run.clear()
    if not text:
        return marker
    lines.append(marker + text)
    return " " * len(marker)  # what follows in the same item continues it


def _section_id(heading: Node) -> str | None:
    """The id of the section a heading opens (Sphinx puts ids on `<section>`, not on `<h2>`)."""
    parent = heading.parent
    if parent is None or parent.tag not in ("section", "div"):
        return None
    # Extra ids of a section come as empty `<span id>` before its heading: skip them.
    first = next((c for c in parent.iter() if c.tag != "-text" and not _empty_span(c)), None)
    if first is None or first.mem_id != heading.mem_id:
        return None
    return parent.attributes.get("id") or None


def _empty_span(node: Node) -> bool:
    return node.tag == "span" and not (node.text() or "").strip()


# Files ---------------------------------------------------------------------------------------


def extract(data: bytes, filename: str, timeout_s: float = PARSE_TIMEOUT_S) -> tuple[str, Format]:
    """The text of a file and the format to parse it with, by its extension.

    A PDF's text must come out within `timeout_s`: pages can share one huge content stream
    that holds no text, so a small file can cost minutes.
    """
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    kind = _EXTENSIONS.get(suffix)
    if kind is None:
        raise DocumentError(
            f"{filename}: unsupported file type (use .md, .mdx, .html, .txt, .pdf)."
        )
    if kind == "pdf":
        return _pdf_text(data, filename, timeout_s), "text"
    if b"\x00" in data:
        raise DocumentError(f"{filename}: binary data, not a text document.")
    try:
        return data.decode("utf-8-sig"), kind
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{filename}: not valid UTF-8 text.") from exc


def _pdf_text(data: bytes, filename: str, timeout_s: float) -> str:
    import io
    import time

    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DocumentError(f"{filename}: encrypted PDFs are not supported.")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise DocumentError(f"{filename}: more than {MAX_PDF_PAGES} pages.")
        pages, total = [], 0
        deadline = time.monotonic() + timeout_s
        for number, page in enumerate(reader.pages, 1):
            if time.monotonic() > deadline:
                raise DocumentError(
                    f"{filename}: reading the PDF took over {timeout_s:g} s "
                    f"(stopped at page {number} of {len(reader.pages)})."
                )
            text = page.extract_text() or ""
            total += len(text)
            if total > MAX_PDF_CHARS:
                raise DocumentError(f"{filename}: more than {MAX_PDF_CHARS} characters of text.")
            pages.append(text.strip())
    except DocumentError:
        raise
    except LimitReachedError as exc:
        # pypdf stops inflating a stream at 75 MB: a compression bomb costs that, not the worker.
        raise DocumentError(f"{filename}: the PDF expands beyond the size limit.") from exc
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise DocumentError(f"{filename}: not a readable PDF.") from exc
    text = "\n\n".join(p for p in pages if p)
    if not text.strip():
        raise DocumentError(f"{filename}: the PDF holds no extractable text.")
    return text
