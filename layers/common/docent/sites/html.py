"""Built HTML (Sphinx's `_build/html`, any generated site, crawled pages): the ids are the anchors.

A page's main content is its landmark element (`main`, `[role=main]`, `article`, or a generator's
body container); navigation, sidebars and footers around it are dropped. Headings keep their
element ids (or their section's id, as Sphinx writes them), so a deep link names an id the page
really has.
"""

from __future__ import annotations

from pathlib import Path

from docent.errors import DocumentError
from docent.ingest import DocumentIn
from docent.sites import Page, PathMatcher, Plan, SiteOptions, hidden, join_url, source_of

# Most specific first: Sphinx's body, Docusaurus' and MkDocs Material's content, then landmarks.
MAIN_SELECTORS = (
    "div[itemprop=articleBody]",
    "div.body[role=main]",
    "div.theme-doc-markdown",
    "article.md-content__inner",
    "[role=main]",
    "main",
    "article",
)
_NOISE = (
    "nav, aside, header.md-header, footer, .sphinxsidebar, .related, .md-sidebar, "
    ".theme-doc-sidebar-container, .pagination-nav, .theme-doc-footer, .theme-doc-toc-mobile"
)
_NOT_PAGES = {"genindex.html", "search.html", "py-modindex.html", "404.html"}
_NOT_PAGE_DIRS = ("_static/", "_sources/", "_images/", "_modules/", "_downloads/", "assets/")


def main_content(html: str) -> tuple[str | None, str]:
    """(the page's title, an HTML document holding only its main content)."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    main = None
    for selector in MAIN_SELECTORS:
        main = tree.css_first(selector)
        if main is not None:
            break
    main = main or tree.body
    if main is None:
        return None, html
    for node in main.css(_NOISE + ", a.headerlink, a.hash-link"):
        node.decompose()
    heading = main.css_first("h1")
    title = None
    if heading is not None:
        title = " ".join((heading.text(separator=" ") or "").split()) or None
    if not title:
        title_node = tree.css_first("title")
        title = " ".join((title_node.text() or "").split()) if title_node else None
    return title or None, f"<html><body>{main.html}</body></html>"


def built_folder(root: Path) -> Path:
    """Where a Sphinx project's HTML is: the folder itself when built, else `_build/html`."""
    if (root / "objects.inv").is_file() or (root / "searchindex.js").is_file():
        return root
    for candidate in ("_build/html", "build/html", "_build/dirhtml", "build/dirhtml"):
        if (root / candidate / "index.html").is_file():
            return root / candidate
    raise DocumentError(
        f"{root}: no built HTML found; build it first (sphinx-build -b html . _build/html)"
    )


def plan_html(root: Path, options: SiteOptions) -> Plan:
    built = built_folder(root)
    matcher = PathMatcher(options.include, options.exclude)
    pages = []
    for path in sorted(built.rglob("*.html")):
        in_site = path.relative_to(built).as_posix()
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or hidden(in_site) or in_site in _NOT_PAGES:
            continue
        if in_site.startswith(_NOT_PAGE_DIRS) or matcher.skips(relative, in_site):
            continue
        pages.append(Page(path, relative, join_url(options.base_url, in_site)))
    source = source_of(root)

    def read(page: Page) -> DocumentIn:
        title, body = main_content(page.path.read_bytes().decode("utf-8", errors="replace"))
        return page.document(body, source, "html", format="html", title=title)

    notes = [] if options.base_url else ["built HTML: give --base-url so pages get URLs"]
    return Plan("sphinx", root, source, pages, read, notes)
