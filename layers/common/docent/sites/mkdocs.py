"""MkDocs projects: `mkdocs.yml` read as MkDocs reads it, pages at the URLs MkDocs builds.

The config is read with a YAML SafeLoader that tolerates any tag (`!!python/name:...`,
`!!python/object/apply:...`, `!ENV`, `!relative`): a tagged value becomes a `Tagged` holding its
name and arguments, so the toc's slug function can be recognised without importing anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from docent.anchors import AnchorStyle
from docent.errors import DocumentError
from docent.ingest import DocumentIn
from docent.sites import (
    Page,
    PathMatcher,
    Plan,
    SiteOptions,
    Skipped,
    front_matter,
    hidden,
    join_url,
    source_of,
)

PAGE_SUFFIXES = {".md", ".markdown", ".mdown", ".mkdn", ".mkd"}


@dataclass(frozen=True)
class Tagged:
    """A YAML value under a tag the safe loader does not know."""

    tag: str
    value: Any


class _TolerantLoader(yaml.SafeLoader):  # type: ignore[misc]
    pass


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    value: Any
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return Tagged(suffix, value)


_TolerantLoader.add_multi_constructor("", _tagged)


def read_config(path: Path) -> dict[str, Any]:
    """mkdocs.yml as a dict; unknown tags become `Tagged` values, never errors."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_TolerantLoader)  # noqa: S506
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DocumentError(f"{path}: not readable YAML ({exc}).") from exc
    if not isinstance(data, dict):
        raise DocumentError(f"{path}: expected a mapping of settings.")
    return data


def extensions(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`markdown_extensions` as {name: its settings}, whichever list or mapping form is used."""
    raw = config.get("markdown_extensions") or []
    found: dict[str, dict[str, Any]] = {}
    items = raw.items() if isinstance(raw, dict) else [(i, None) for i in raw]
    for item, value in items:
        if isinstance(item, str):
            found[item] = value if isinstance(value, dict) else {}
        elif isinstance(item, dict):
            for name, settings in item.items():
                found[str(name)] = settings if isinstance(settings, dict) else {}
    return found


def anchor_style(config: dict[str, Any]) -> AnchorStyle:
    """The toc extension's slug function and separator, as mkdocs.yml sets them."""
    exts = extensions(config)
    toc = exts.get("toc") or exts.get("markdown.extensions.toc") or {}
    separator = toc.get("separator", "-")
    if not isinstance(separator, str):
        separator = "-"
    attr_list = "attr_list" in exts or "markdown.extensions.attr_list" in exts
    slugify = toc.get("slugify")
    style = AnchorStyle(name="mkdocs", separator=separator, attr_list=attr_list)
    if not isinstance(slugify, Tagged):
        return style
    tag = slugify.tag.removeprefix("tag:yaml.org,2002:")
    name = tag.split(":", 1)[1] if ":" in tag else str(slugify.value)
    if name.endswith("toc.slugify_unicode"):
        return AnchorStyle(
            name="mkdocs", slug="toc-unicode", separator=separator, attr_list=attr_list
        )
    if name.startswith("pymdownx.slugs."):
        kwds = slugify.value.get("kwds", {}) if isinstance(slugify.value, dict) else {}
        case = {"uslugify": "none", "uslugify_cased": "none", "gfm": "lower"}.get(
            name.rsplit(".", 1)[1], str(kwds.get("case", "none"))
        )
        return AnchorStyle(
            name="mkdocs",
            slug="pymdownx",
            separator=separator,
            case=case,
            normalize=str(kwds.get("normalize", "NFC")),
            attr_list=attr_list,
        )
    return style


def page_url(relative: str, use_directory_urls: bool) -> str:
    """The path MkDocs serves a page at, relative to site_url (`relative` is under docs_dir)."""
    stem, _, _ = relative.rpartition(".")
    parent, _, name = stem.rpartition("/")
    prefix = parent + "/" if parent else ""
    if name in ("index", "README"):
        return prefix if use_directory_urls else prefix + "index.html"
    return prefix + name + "/" if use_directory_urls else stem + ".html"


def plan_mkdocs(root: Path, options: SiteOptions) -> Plan:
    config_path = root / "mkdocs.yml"
    if not config_path.is_file():
        config_path = root / "mkdocs.yaml"
    if not config_path.is_file():
        raise DocumentError(f"{root}: no mkdocs.yml.")
    config = read_config(config_path)
    docs_dir = (root / str(config.get("docs_dir") or "docs")).resolve()
    if not docs_dir.is_dir():
        raise DocumentError(f"{root}: docs_dir {docs_dir} is not a folder.")
    site_url = options.base_url or _str(config.get("site_url"))
    directory_urls = config.get("use_directory_urls", True) is not False
    style = anchor_style(config)
    excluded = _patterns(config.get("exclude_docs")) + _patterns(config.get("draft_docs"))
    matcher = PathMatcher(options.include, options.exclude)
    site_matcher = PathMatcher((), excluded)
    candidates = sorted(p for p in docs_dir.rglob("*") if p.suffix.lower() in PAGE_SUFFIXES)
    by_dir = {p.parent for p in candidates if p.stem == "index"}
    pages = []
    for path in candidates:
        in_docs = path.relative_to(docs_dir).as_posix()
        relative = path.relative_to(root.resolve()).as_posix() if _inside(path, root) else in_docs
        if not path.is_file() or hidden(in_docs) or in_docs.startswith("templates/"):
            continue
        if site_matcher.skips(in_docs) or matcher.skips(relative, in_docs):
            continue
        if path.stem == "README" and path.parent in by_dir:
            continue  # MkDocs prefers index.md over README.md in the same folder
        url = join_url(site_url, page_url(in_docs, directory_urls)) if site_url else None
        pages.append(Page(path, relative, url))
    source = source_of(root)
    snippets = exts_snippets(config, root)

    def read(page: Page) -> DocumentIn:
        from docent.sites.includes import resolve_includes

        text = page.path.read_bytes().decode("utf-8-sig", errors="replace")
        front = front_matter(text, _TolerantLoader)
        search = front.get("search")
        if isinstance(search, dict) and search.get("exclude") is True:
            raise Skipped("excluded from search (search: exclude)")
        if front.get("draft") is True:
            raise Skipped("a draft")
        text = resolve_includes(text, page.path, root.resolve(), snippets)
        text, directives = drop_autodoc(text)
        if directives and not _prose(text):
            raise Skipped("an API reference stub (mkdocstrings `:::` only)")
        return page.document(text, source, style.spec())

    notes = [] if site_url else ["no site_url in mkdocs.yml and no --base-url: pages get no URL"]
    return Plan("mkdocs", root, source, pages, read, notes)


def exts_snippets(config: dict[str, Any], root: Path) -> list[Path]:
    """The folders pymdownx.snippets reads from (its `base_path`, default the project root)."""
    snippets = extensions(config).get("pymdownx.snippets")
    if snippets is None:
        return [root.resolve()]
    base = snippets.get("base_path", ["."])
    bases = [base] if isinstance(base, str) else [b for b in base if isinstance(b, str)]
    return [(root / b).resolve() for b in bases]


_AUTODOC = re.compile(r"^:::[ \t]+\S")


def drop_autodoc(text: str) -> tuple[str, int]:
    """The text without mkdocstrings `::: module.Object` directives (and their indented options):
    Docent cannot render them, and the bare identifier is no content to answer from."""
    out: list[str] = []
    dropped = 0
    in_directive = False
    for line in text.split("\n"):
        if _AUTODOC.match(line):
            in_directive, dropped = True, dropped + 1
            continue
        if in_directive and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        in_directive = False
        out.append(line)
    return "\n".join(out), dropped


def _prose(text: str) -> bool:
    """Whether markdown holds anything but front matter, headings and blank lines."""
    body = text
    if body.startswith("---"):
        end = body.find("\n---", 3)
        body = body[end + 4 :] if end >= 0 else body
    return any(line.strip() and not line.lstrip().startswith("#") for line in body.split("\n"))


def _patterns(value: object) -> tuple[str, ...]:
    """exclude_docs / draft_docs: gitignore lines (negations are not honoured)."""
    if not isinstance(value, str):
        return ()
    lines = (line.strip() for line in value.splitlines())
    return tuple(line for line in lines if line and not line.startswith(("#", "!")))


def _str(value: object) -> str | None:
    """A plain string setting; `!ENV VAR` / `!ENV [VAR, ..., default]` read as MkDocs does."""
    if isinstance(value, Tagged) and value.tag == "!ENV":
        names = value.value if isinstance(value.value, list) else [value.value]
        variables, default = (names[:-1], names[-1]) if len(names) > 1 else (names, None)
        value = next((os.environ[str(n)] for n in variables if str(n) in os.environ), default)
    return value if isinstance(value, str) and value.strip() else None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root.resolve())
    except ValueError:
        return False
    return True
