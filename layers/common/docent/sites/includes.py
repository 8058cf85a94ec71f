"""Includes resolved before a page is indexed, so the code and text they pull in is searchable.

- pymdownx.snippets: a line `--8<-- "file"` (optionally `file:3:5` lines or `file:name` section)
  and the block form (`--8<--`, one file a line, `--8<--`), paths under the snippet base folders;
  `;--8<--` is an escaped marker, kept as text without the `;`.
- Code includes: `{* path hl[3] ln[1:5] *}` (the `docs_src` convention) and markdown-include's
  `{!path!}`, paths relative to the page.
Every path must stay inside the project root; a file is read only up to `MAX_INCLUDE_BYTES`,
includes nest at most `MAX_DEPTH` deep and a page grows to at most `MAX_PAGE_BYTES`. An include
that cannot be resolved is dropped: it is never indexed as its literal marker.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

MAX_INCLUDE_BYTES = 1024 * 1024
MAX_PAGE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 4

_SNIPPET_LINE = re.compile(
    r"""^(?P<space>[ \t]*)(?P<escape>;*)(?P<all>(?P<inline>-{1,}8<-{1,}[ \t]+)"""
    r"""(?P<snippet>"(?:\\"|[^"\n\r])+?"|'(?:\\'|[^'\n\r])+?')(?![ \t])"""
    r"""|(?P<block>-{1,}8<-{1,})(?![ \t]))\r?$"""
)
_SECTION_MARK = re.compile(
    r"-{1,}8<-{1,}[ \t]+\[[ \t]*(start|end)[ \t]*:[ \t]*([a-z][-_0-9a-z]*)", re.I
)
_CODE_INCLUDE = re.compile(r"^(?P<space>[ \t]*)\{\*\s*(?P<path>\S+)(?P<opts>[^*]*)\*\}[ \t]*$")
_MARKDOWN_INCLUDE = re.compile(r"\{!\s*(?P<path>[^!\n]+?)\s*!\}")
_LINES = re.compile(r"ln\[([0-9:,\s]+)\]")
_LANGUAGES = {
    ".py": "python", ".js": "javascript", ".ts": "typescript", ".tsx": "tsx", ".jsx": "jsx",
    ".sh": "bash", ".json": "json", ".yml": "yaml", ".yaml": "yaml", ".toml": "toml",
    ".html": "html", ".css": "css", ".go": "go", ".rs": "rust", ".java": "java", ".sql": "sql",
}  # fmt: skip


def resolve_includes(
    text: str, page: Path, root: Path, snippet_bases: Sequence[Path], depth: int = 0
) -> str:
    """The page's text with every include replaced by what it names, or dropped."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    size = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        replacement: list[str] | None = None
        snippet = _SNIPPET_LINE.match(line) if "8<-" in line else None
        if snippet is not None:
            space = snippet.group("space")
            if snippet.group("escape"):
                replacement = [space + snippet.group("escape")[1:] + snippet.group("all")]
            elif snippet.group("inline"):
                quote = snippet.group("snippet")[0]
                name = snippet.group("snippet")[1:-1].replace("\\" + quote, quote)
                replacement = _indent(_snippet(name, root, snippet_bases, page, depth), space)
            else:
                names = []
                while i < len(lines) and not _SNIPPET_LINE.match(lines[i]):
                    names.append(lines[i].strip())
                    i += 1
                i += 1  # the closing marker
                replacement = []
                for name in names:
                    if name and not name.startswith(";"):
                        replacement += _indent(
                            _snippet(name, root, snippet_bases, page, depth), space
                        )
        elif "{*" in line and (code := _CODE_INCLUDE.match(line)):
            replacement = _indent(
                _code(code.group("path"), code.group("opts"), page, root), code.group("space")
            )
        elif "{!" in line:
            replacement = [
                _MARKDOWN_INCLUDE.sub(
                    lambda m: "\n".join(_markdown_file(m.group("path"), page, root, depth)), line
                )
            ]
        chunk = [line] if replacement is None else replacement
        size += sum(len(c) + 1 for c in chunk)
        if size > MAX_PAGE_BYTES:
            break
        out += chunk
    return "\n".join(out)


def _indent(lines: list[str], space: str) -> list[str]:
    return [space + line if line else line for line in lines]


def inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _read(path: Path, root: Path) -> str | None:
    """The file's text when it exists inside the root and is small enough, else None."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return None
    if not inside(resolved, root) or not resolved.is_file():
        return None
    try:
        with resolved.open("rb") as handle:
            data = handle.read(MAX_INCLUDE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_INCLUDE_BYTES or b"\x00" in data:
        return None
    return data.decode("utf-8-sig", errors="replace")


def _snippet(name: str, root: Path, bases: Sequence[Path], page: Path, depth: int) -> list[str]:
    if depth >= MAX_DEPTH or name.startswith(("http://", "https://")):
        return []
    path, lines, section = _split(name)
    for base in bases:
        candidate = (base / path).resolve()
        if not inside(candidate, base):
            continue
        text = _read(candidate, root)
        if text is None:
            continue
        text = resolve_includes(text, candidate, root, bases, depth + 1)
        body = text.split("\n")
        if section:
            body = _section(body, section)
        elif lines:
            body = _ranges(body, lines)
        return [line for line in body if not _SECTION_MARK.search(line)]
    return []


def _split(name: str) -> tuple[str, str | None, str | None]:
    """`file:1:5,10:` -> (file, ranges, None); `file:name` -> (file, None, name)."""
    match = re.match(r"^(.*?)((?::-?[0-9]*){1,2}(?:,-?[0-9]*(?::-?[0-9]*)?)*)$", name)
    if match and match.group(2) and ":" in match.group(2):
        return match.group(1), match.group(2)[1:], None
    match = re.match(r"^(.*?):([a-z][-_0-9a-z]*)$", name, re.I)
    if match and not re.match(r"^[a-z]$", match.group(1), re.I):
        return match.group(1), None, match.group(2)
    return name, None, None


def _ranges(body: list[str], spec: str) -> list[str]:
    out: list[str] = []
    for part in spec.split(","):
        bounds = part.split(":")
        start = int(bounds[0]) if bounds[0].lstrip("-").isdigit() else 1
        end = int(bounds[1]) if len(bounds) > 1 and bounds[1].lstrip("-").isdigit() else len(body)
        start = start if start > 0 else max(1, len(body) + start + 1)
        end = end if end > 0 else len(body) + end + 1
        out += body[start - 1 : end]
    return out


def _section(body: list[str], name: str) -> list[str]:
    out: list[str] = []
    inside_section = False
    for line in body:
        mark = _SECTION_MARK.search(line)
        if mark and mark.group(2).lower() == name.lower():
            if mark.group(1).lower() == "end" and inside_section:
                break
            inside_section = mark.group(1).lower() == "start"
            continue
        if inside_section:
            out.append(line)
    return out


def _code(path: str, options: str, page: Path, root: Path) -> list[str]:
    text = _read(page.parent / path, root)
    if text is None:
        return []
    body = text.rstrip("\n").split("\n")
    ranges = _LINES.search(options)
    if ranges:
        body = _ranges(body, ranges.group(1).replace(" ", ""))
    language = _LANGUAGES.get(Path(path).suffix.lower(), "")
    fence = "````" if any(line.lstrip().startswith("```") for line in body) else "```"
    return [fence + language, *body, fence]


def _markdown_file(path: str, page: Path, root: Path, depth: int) -> list[str]:
    if depth >= MAX_DEPTH:
        return []
    text = _read(page.parent / path, root)
    if text is None:
        return []
    return resolve_includes(text, page.parent / path, root, [root], depth + 1).split("\n")


_MDX_IMPORT = re.compile(
    r"""^import\s+(?P<name>[A-Za-z_$][\w$]*)\s+from\s+(?P<q>['"])(?P<raw>!!raw-loader!)?"""
    r"""(?P<path>\.{1,2}/[^'"]+)(?P=q);?\s*$"""
)


def resolve_mdx_imports(text: str, page: Path, root: Path) -> str:
    """Docusaurus imports made searchable: `<Partial />` of an imported .md/.mdx partial becomes
    its text (its headings as plain lines: a partial's ids are its own, not the page's), and a
    `!!raw-loader!` import used as `{Source}` becomes a fenced code block. Bounded as above."""
    partials: dict[str, Path] = {}
    raws: dict[str, Path] = {}
    for line in text.split("\n"):
        match = _MDX_IMPORT.match(line.strip())
        if match:
            target = page.parent / match.group("path")
            if match.group("raw"):
                raws[match.group("name")] = target
            elif target.suffix in (".md", ".mdx"):
                partials[match.group("name")] = target
    if not partials and not raws:
        return text
    out: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        tag = re.match(r"^<([A-Za-z_$][\w$]*)(\s[^>]*)?/>$", stripped)
        if tag and tag.group(1) in partials:
            body = _read(partials[tag.group(1)], root)
            if body is not None:
                body = re.sub(r"(?s)^---\n.*?\n---\n", "", body)
                out += [re.sub(r"^\s{0,3}#{1,6}\s+", "", b) for b in body.split("\n")]
            continue
        used = next((n for n in raws if "{" + n + "}" in stripped), None)
        if used is not None:
            source = _read(raws[used], root)
            if source is not None:
                language = _LANGUAGES.get(raws[used].suffix.lower(), "")
                out += ["```" + language, *source.rstrip("\n").split("\n"), "```"]
            continue
        out.append(line)
    return "\n".join(out)
