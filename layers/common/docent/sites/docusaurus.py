"""Docusaurus sites: docs pages at the permalinks the docs plugin gives them.

The config is JavaScript; its `url`, `baseUrl` and the docs `routeBasePath` are read when they are
plain string literals, and `--base-url` (the site's url plus baseUrl) stands in when they are not.
Each page's slug follows @docusaurus/plugin-content-docs: number prefixes stripped from folder and
file names, `id` and `slug` front matter, a folder's `index`/`README`/same-named file as its URL;
`draft` and `unlisted` pages, and `_`-prefixed files and folders, are not published.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from docent import sites
from docent.anchors import AnchorStyle
from docent.errors import DocumentError
from docent.ingest import DocumentIn
from docent.sites import Page, PathMatcher, Plan, SiteOptions, Skipped

_IGNORED_PREFIX = re.compile(r"^\d+[-_.]\d+")
_NUMBER_PREFIX = re.compile(r"^(\d+)\s*[-_.]+\s*([^-_.\s].*)$")
_STRING = r"""\s*:\s*(['"`])([^'"`]*)\1"""


def strip_number_prefix(name: str) -> str:
    """`01-intro` -> `intro`, but `2021-11-notes` and `7.0-notes` stay (dates and versions)."""
    if _IGNORED_PREFIX.match(name):
        return name
    match = _NUMBER_PREFIX.match(name)
    return str(match.group(2)) if match else name


def read_config(root: Path) -> dict[str, str]:
    """The plain string settings the config holds: `url`, `baseUrl`, docs `routeBasePath`."""
    for ext in ("ts", "js", "mjs", "cjs"):
        path = root / f"docusaurus.config.{ext}"
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            found = {}
            for key in ("url", "baseUrl", "routeBasePath"):
                match = re.search(rf"(?m)^\s*{key}{_STRING}", text)
                if match:
                    found[key] = match.group(2)
            if re.search(r"(?m)^\s*trailingSlash\s*:\s*true\b", text):
                found["trailingSlash"] = "true"
            return found
    return {}


def slug_for(relative: str, front: dict[str, Any]) -> str:
    """The doc's slug within the docs route (`relative` is the path under docs/)."""
    directory = posixpath.dirname(relative) or "."
    filename = posixpath.splitext(posixpath.basename(relative))[0]
    parse_prefixes = front.get("parse_number_prefixes", True) is not False
    unprefixed = strip_number_prefix(filename) if parse_prefixes else filename
    base_id = str(front["id"]) if isinstance(front.get("id"), str) else unprefixed
    if directory == ".":
        dir_slug = "/"
    else:
        parts = directory.split("/")
        stripped = [strip_number_prefix(p) for p in parts] if parse_prefixes else parts
        dir_slug = "/" + "/".join(stripped) + "/"
    front_slug = str(front["slug"]) if isinstance(front.get("slug"), str) else None
    if front_slug and front_slug.startswith("/"):
        return front_slug
    last_dir = directory.split("/")[-1].lower() if directory != "." else None
    if not front_slug and filename.lower() in ("index", "readme", last_dir):
        return dir_slug
    resolved = posixpath.normpath(posixpath.join(dir_slug, front_slug or base_id))
    return resolved


def plan_docusaurus(root: Path, options: SiteOptions) -> Plan:
    config = read_config(root)
    if options.base_url:
        site = options.base_url.rstrip("/")
    elif "url" in config:
        site = config["url"].rstrip("/") + "/" + config.get("baseUrl", "/").strip("/")
        site = site.rstrip("/")
    else:
        site = ""
    route = config.get("routeBasePath", "docs").strip("/")
    docs = root / "docs"
    if not docs.is_dir():
        raise DocumentError(f"{root}: no docs/ folder.")
    matcher = PathMatcher(options.include, options.exclude)
    pages = []
    for path in sorted(docs.rglob("*")):
        in_docs = path.relative_to(docs).as_posix()
        relative = path.relative_to(root).as_posix()
        if (
            not path.is_file()
            or path.suffix.lower() not in (".md", ".mdx")
            or sites.hidden(in_docs)
        ):
            continue
        if any(part.startswith("_") for part in in_docs.split("/")) or "__tests__" in in_docs:
            continue
        if matcher.skips(relative, in_docs):
            continue
        front = sites.front_matter(path.read_bytes().decode("utf-8-sig", errors="replace"))
        slug = slug_for(in_docs, front).strip("/")
        url = site + "/" + "/".join(p for p in (route, slug) if p) if site else None
        if url and config.get("trailingSlash") and not url.endswith("/"):
            url += "/"
        pages.append(Page(path, relative, url))
    source = sites.source_of(root)
    style = AnchorStyle(name="docusaurus")

    def read(page: Page) -> DocumentIn:
        text = page.path.read_bytes().decode("utf-8-sig", errors="replace")
        front = sites.front_matter(text)
        if front.get("draft") is True:
            raise Skipped("a draft (draft: true)")
        if front.get("unlisted") is True:
            raise Skipped("unlisted (unlisted: true)")
        from docent.sites.includes import resolve_mdx_imports

        text = resolve_mdx_imports(text, page.path, root.resolve())
        return page.document(text, source, style.spec())

    notes = [] if site else ["docusaurus.config has no plain `url`: give --base-url"]
    return Plan("docusaurus", root, source, pages, read, notes)
