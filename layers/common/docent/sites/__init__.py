"""Docs sites as they are published: which generator built a folder, and where each page lives.

`plan(path, options)` recognises the generator (MkDocs, Docusaurus, Sphinx or other built HTML,
a GitHub repository, or a plain folder) and lists the files that are pages, each with its document
id (the path relative to the folder, as `docent ingest` always used) and the URL the site serves
it at. `Plan.read(page)` turns one page into a `DocumentIn` whose metadata names its source and
the generator's anchor style, so the sections' anchors are the element ids the site's HTML has.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from docent.anchors import AnchorStyle
from docent.errors import DocumentError
from docent.ingest import DocumentIn

SiteName = Literal["mkdocs", "docusaurus", "sphinx", "github", "plain"]
SITES: tuple[SiteName, ...] = ("mkdocs", "docusaurus", "sphinx", "github", "plain")
MAX_FILE_BYTES = 20 * 1024 * 1024


class Skipped(Exception):
    """A file that is not published as a page (a draft, excluded from search, ...)."""


@dataclass(frozen=True)
class SiteOptions:
    site: SiteName | None = None
    base_url: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Page:
    path: Path
    document_id: str
    url: str | None

    def document(
        self,
        text: str,
        source: str,
        anchors: str | dict[str, Any],
        format: Literal["markdown", "html"] = "markdown",
        title: str | None = None,
    ) -> DocumentIn:
        """The page as a document of `source`, its headings anchored in the `anchors` style."""
        metadata: dict[str, Any] = {"source": source, "anchors": anchors}
        return DocumentIn(
            id=self.document_id, text=text, title=title, url=self.url, format=format,
            metadata=metadata,
        )  # fmt: skip


@dataclass
class Plan:
    """The pages of one source and how to read each."""

    site: SiteName
    root: Path
    source: str
    pages: list[Page]
    reader: Callable[[Page], DocumentIn] = field(repr=False)
    notes: list[str] = field(default_factory=list)

    def read(self, page: Page) -> DocumentIn:
        """The page as a document; raises `Skipped` for a page the site does not publish."""
        if page.path.stat().st_size > MAX_FILE_BYTES:
            raise DocumentError(f"{page.document_id}: larger than {MAX_FILE_BYTES} bytes.")
        return self.reader(page)


def detect(root: Path) -> SiteName:
    """The generator a folder is built with, from the files it holds."""
    if (root / "mkdocs.yml").is_file() or (root / "mkdocs.yaml").is_file():
        return "mkdocs"
    if any((root / f"docusaurus.config.{ext}").is_file() for ext in ("js", "ts", "mjs", "cjs")):
        return "docusaurus"
    if (root / "conf.py").is_file() or (root / "objects.inv").is_file():
        return "sphinx"
    if (root / ".git").exists():
        return "github"
    return "plain"


def plan(path: str | Path, options: SiteOptions | None = None) -> Plan:
    """The pages of the folder at `path`, by its generator (or `options.site`)."""
    options = options or SiteOptions()
    root = Path(path)
    if not root.is_dir():
        raise DocumentError(f"{path}: not a folder.")
    site = options.site or detect(root)
    if site == "mkdocs":
        from docent.sites.mkdocs import plan_mkdocs

        return plan_mkdocs(root, options)
    if site == "docusaurus":
        from docent.sites.docusaurus import plan_docusaurus

        return plan_docusaurus(root, options)
    if site == "sphinx":
        from docent.sites.html import plan_html

        return plan_html(root, options)
    return plan_files(root, options, site)


# Folders as files: GitHub and plain ------------------------------------------------------------

_MARKDOWN = {".md", ".mdx", ".markdown"}


def plan_files(root: Path, options: SiteOptions, site: SiteName) -> Plan:
    """Every supported file; on GitHub, markdown at `base_url/path` with GitHub's anchors."""
    from docent.corpus import SUFFIXES, document_from_bytes

    suffixes = _MARKDOWN if site == "github" else SUFFIXES
    base_url = options.base_url
    if site == "github" and base_url and _REPOSITORY.match(base_url):
        # A bare repository URL: files are served under blob/<the checked-out branch>.
        base_url = base_url.rstrip("/") + "/blob/" + (git_branch(root) or "HEAD")
    matcher = PathMatcher(options.include, options.exclude)
    pages = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if not path.is_file() or path.suffix.lower() not in suffixes or hidden(relative):
            continue
        if matcher.skips(relative):
            continue
        url = join_url(base_url, relative) if base_url else None
        pages.append(Page(path, relative, url))
    source = source_of(root)
    style = AnchorStyle(name="github") if site == "github" else None

    def read(page: Page) -> DocumentIn:
        doc = document_from_bytes(page.path.read_bytes(), page.path.name, page.document_id)
        metadata = {"source": source}
        if style is not None and doc.format == "markdown":
            metadata["anchors"] = style.spec()  # type: ignore[assignment]
        return DocumentIn(
            id=doc.id, text=doc.text, format=doc.format, url=page.url, metadata=metadata
        )

    return Plan(site, root, source, pages, read)


_REPOSITORY = re.compile(r"^https?://[^/]+/[^/]+/[^/]+/?$")


def front_matter(text: str, loader: Any = None) -> dict[str, Any]:
    """A page's leading `---` YAML block as a dict ({} when absent or unreadable).

    Only the generator's own switches are read here (draft, slug, search: exclude); the
    document's front matter is read again, within its caps, when it is parsed.
    """
    import yaml

    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.load(text[3:end], Loader=loader or yaml.SafeLoader)  # noqa: S506
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def git_branch(root: Path) -> str | None:
    """The branch checked out in `root` (from .git/HEAD), None when detached or unknown."""
    head = root / ".git" / "HEAD"
    try:
        text = head.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    prefix = "ref: refs/heads/"
    return text[len(prefix) :] if text.startswith(prefix) else None


# Shared ------------------------------------------------------------------------------------


def source_of(root: Path) -> str:
    """The name a folder source is remembered by: its absolute path."""
    return str(root.resolve())


def hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split("/"))


def join_url(base: str | None, path: str) -> str | None:
    if base is None:
        return None
    return base.rstrip("/") + "/" + path.lstrip("/")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A gitignore-like glob: `**` any folders, `*` within a name; no `/` matches any depth."""
    anchored = "/" in pattern.strip("/")
    pattern = pattern.strip("/")
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    body = "".join(out)
    # A pattern naming a folder matches everything under it too.
    return re.compile(("^" if anchored else "^(?:.*/)?") + body + "(?:/.*)?$")


class PathMatcher:
    """--include / --exclude over paths relative to the source's root (or its docs folder)."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self.include = [glob_regex(p) for p in include]
        self.exclude = [glob_regex(p) for p in exclude]

    def skips(self, *paths: str) -> bool:
        """Whether a file (known by one or more relative paths) is left out."""
        if self.include and not any(r.match(p) for r in self.include for p in paths):
            return True
        return any(r.match(p) for r in self.exclude for p in paths)
