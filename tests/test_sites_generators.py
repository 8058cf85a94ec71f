"""Deep links checked against the real generators' output.

Each fixture project (tests/fixtures/sites/) is built by the real generator: MkDocs with Material
and pymdown-extensions, Sphinx, Docusaurus (npm, installed once into $DOCENT_CACHE by
scripts/setup_docusaurus.sh). Docent then reads the sources as `docent ingest` does, and every
deep link it would emit (a section's url + #anchor) must name a page of the built site and an
element id that page carries; the ids it gives are exactly the built headings' ids, in order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from selectolax.lexbor import LexborHTMLParser

from docent.parsing import parse
from docent.retrieval import deep_link
from docent.sites import Plan, SiteOptions, Skipped, plan

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SITES = Path(__file__).parent / "fixtures" / "sites"
CACHE = Path(os.environ.get("DOCENT_CACHE") or Path.home() / ".cache/docent")
DOCUSAURUS = CACHE / "docusaurus"


def links(site_plan: Plan) -> dict[str, list[str | None]]:
    """Per page URL, the anchor of each section Docent makes of it, in order."""
    found: dict[str, list[str | None]] = {}
    for page in site_plan.pages:
        try:
            doc = site_plan.read(page)
        except Skipped:
            continue
        parsed = parse(doc.text, doc.format, doc.metadata.get("anchors"))
        assert doc.url, page
        found[doc.url] = [s.anchor for s in parsed.sections if s.headings]
        for section in parsed.sections:
            assert "{" not in " ".join(section.headings), section.headings  # no attr lists shown
    return found


def built_file(site: Path, base: str, url: str) -> Path:
    assert url.startswith(base), (url, base)
    path = unquote(urlsplit(url).path)[len(urlsplit(base).path) :].lstrip("/")
    if path == "" or path.endswith("/"):
        path += "index.html"
    elif not path.endswith(".html"):
        path += "/index.html"
    return site / path


def built_heading_ids(page: Path) -> list[str]:
    """The ids the built page gives its headings: the id, else its permalink's target."""
    tree = LexborHTMLParser(page.read_text(encoding="utf-8"))
    main = tree.css_first("article") or tree.css_first("[role=main]") or tree.css_first("main")
    assert main is not None, page
    ids = []
    for heading in main.css("h1, h2, h3, h4, h5, h6"):
        if heading.parent is not None and heading.parent.tag == "blockquote":
            continue  # it takes an id, but opens no section of its own
        anchor = heading.attributes.get("id")
        if not anchor:
            link = heading.css_first("a.headerlink, a.hash-link")
            href = link.attributes.get("href") if link is not None else None
            anchor = href[1:] if href and href.startswith("#") else None
        if anchor:
            ids.append(anchor)
    return ids


def all_ids(page: Path) -> set[str]:
    tree = LexborHTMLParser(page.read_text(encoding="utf-8"))
    return {str(n.attributes["id"]) for n in tree.css("[id]")}


def check_site(site_plan: Plan, site: Path, base: str) -> dict[str, list[str | None]]:
    """Every emitted deep link resolves in the built site; the heading ids match in order."""
    pages = links(site_plan)
    assert pages
    for url, anchors in pages.items():
        page = built_file(site, base, url)
        assert page.is_file(), f"{url}: no built page {page}"
        ids = all_ids(page)
        for anchor in anchors:
            link = deep_link(url, anchor)
            assert link is not None
            if anchor is not None:
                assert unquote(urlsplit(link).fragment) in ids, f"{link}: no element id"
        assert [a for a in anchors if a] == built_heading_ids(page), url
    return pages


def run(command: list[str], cwd: Path, timeout: int = 300) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# MkDocs ---------------------------------------------------------------------------------------

MKDOCS_VARIANTS = {
    "default": "",
    "pymdownx-lower-underscore": (
        "  - toc:\n"
        "      separator: _\n"
        "      slugify: !!python/object/apply:pymdownx.slugs.slugify {kwds: {case: lower}}\n"
    ),
    "unicode-no-directory-urls": (
        "use_directory_urls: false\n"
        "markdown_extensions_extra:\n"
        "  - toc:\n"
        "      slugify: !!python/name:markdown.extensions.toc.slugify_unicode\n"
    ),
}


def mkdocs_project(tmp: Path, variant: str) -> Path:
    project = tmp / f"mkdocs-{variant}"
    shutil.copytree(SITES / "mkdocs", project)
    config = (project / "mkdocs.yml").read_text()
    if variant == "pymdownx-lower-underscore":
        config = config.replace("  - toc:\n      permalink: true\n", MKDOCS_VARIANTS[variant])
    elif variant == "unicode-no-directory-urls":
        config = "use_directory_urls: false\n" + config.replace(
            "      permalink: true\n",
            "      permalink: true\n"
            "      slugify: !!python/name:markdown.extensions.toc.slugify_unicode\n",
        )
    (project / "mkdocs.yml").write_text(config)
    return project


@pytest.mark.parametrize("variant", list(MKDOCS_VARIANTS))
def test_mkdocs_deep_links_resolve_in_the_built_site(tmp_path: Path, variant: str) -> None:
    project = mkdocs_project(tmp_path, variant)
    run([sys.executable, "-m", "mkdocs", "build", "-q", "-d", str(tmp_path / "site")], project)

    site_plan = plan(project)
    pages = check_site(site_plan, tmp_path / "site", "https://docs.example.test/fixture/")

    assert site_plan.site == "mkdocs"
    ids = [p.document_id for p in site_plan.pages]
    assert "docs/drafts/wip.md" not in ids  # exclude_docs
    assert "docs/guide/hidden.md" in ids and len(pages) == 2  # read, then skipped (search)
    index = "index.html" if variant == "unicode-no-directory-urls" else ""
    front = pages[f"https://docs.example.test/fixture/{index}"]
    if variant == "default":
        assert front[:6] == [
            "top", "use-corsmiddleware", "repeated", "repeated_1", "repeated_2", "repeated_3"
        ]  # fmt: skip
        assert "_1" in front and "2024" in front and "cafe-naive-unicode" in front
        assert front[-1] == "repeated_5"  # the quoted Repeated took repeated_4
    if variant == "pymdownx-lower-underscore":
        assert "whats_new_v20__more" in front and "café_naïve_ünïcödé" in front
    if variant == "unicode-no-directory-urls":
        assert "café-naïve-ünïcödé" in front


def test_mkdocs_without_site_url_takes_the_base_url(tmp_path: Path) -> None:
    project = mkdocs_project(tmp_path, "default")
    config = (project / "mkdocs.yml").read_text().replace("site_url:", "# site_url:")
    (project / "mkdocs.yml").write_text(config)

    without = plan(project)
    given = plan(project, SiteOptions(base_url="https://elsewhere.test/docs"))

    assert {p.url for p in without.pages} == {None} and without.notes
    assert {p.url for p in given.pages} >= {
        "https://elsewhere.test/docs/",
        "https://elsewhere.test/docs/guide/install/",
    }


# Sphinx ---------------------------------------------------------------------------------------


def test_sphinx_deep_links_are_the_ids_the_html_carries(tmp_path: Path) -> None:
    project = tmp_path / "sphinx"
    shutil.copytree(SITES / "sphinx", project)
    run([sys.executable, "-m", "sphinx", "-q", "-b", "html", ".", "_build/html"], project)

    base = "https://sphinx.example.test/en/latest/"
    site_plan = plan(project, SiteOptions(base_url=base))
    pages = check_site(site_plan, project / "_build" / "html", base)

    assert site_plan.site == "sphinx"
    assert set(pages) == {base + "index.html", base + "guide.html"}  # no genindex, search
    guide = pages[base + "guide.html"]
    assert "use-corsmiddleware" in guide and "what-s-new-v2-0-more" in guide
    doc = site_plan.read(next(p for p in site_plan.pages if p.document_id.endswith("guide.html")))
    assert doc.title == "Guide" and "¶" not in doc.text


# Docusaurus -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docusaurus_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: Docusaurus needs Node.js 20+")
    run([str(ROOT / "scripts" / "setup_docusaurus.sh")], ROOT, timeout=900)
    tmp = tmp_path_factory.mktemp("docusaurus")
    project = tmp / "project"
    shutil.copytree(SITES / "docusaurus", project)
    (project / "node_modules").symlink_to(DOCUSAURUS / "node_modules")
    binary = str(DOCUSAURUS / "node_modules" / ".bin" / "docusaurus")
    run([binary, "build", "--out-dir", str(tmp / "site")], project, timeout=600)
    yield project, tmp / "site"


def test_docusaurus_deep_links_resolve_in_the_built_site(
    docusaurus_site: tuple[Path, Path],
) -> None:
    project, site = docusaurus_site
    site_plan = plan(project)
    base = "https://docs.example.test/site/"
    pages = check_site(site_plan, site, base)

    assert site_plan.site == "docusaurus"
    assert set(pages) == {
        base + "reference",  # slug: /
        base + "reference/guides",  # 01-guides/index.md
        base + "reference/guides/setup",  # 01-guides/02-setup.md
        base + "reference/guides/awkward",
        base + "reference/custom-id",  # id: custom-id
        base + "reference/elsewhere/page",  # slug: /elsewhere/page
        base + "reference/2021-11-notes",  # a date, not a number prefix
    }  # no draft, no unlisted, no _partials
    awkward = pages[base + "reference/guides/awkward"]
    assert awkward == [
        None, "use-corsmiddleware", "repeated", "repeated-1", "repeated-2", "repeated-1-1",
        "whats-new-v20--more", "the-depends-function", "café-naïve-ünïcödé", "-party-time",
        None, "2024", "θ-greek-capital", "repeated-4", "comment-id",
    ]  # fmt: skip


def test_docusaurus_config_it_cannot_read_takes_the_base_url(
    docusaurus_site: tuple[Path, Path],
) -> None:
    project, _ = docusaurus_site
    config = project / "docusaurus.config.js"
    original = config.read_text()
    try:
        config.write_text("module.exports = require('./site-settings');\n")
        unreadable = plan(project)
        given = plan(project, SiteOptions(base_url="https://docs.example.test/site/"))
    finally:
        config.write_text(original)

    assert {p.url for p in unreadable.pages} == {None} and unreadable.notes
    assert "https://docs.example.test/site/docs/guides/setup" in {p.url for p in given.pages}
