"""Documents from files: folders of .md/.mdx/.html/.txt/.pdf become `DocumentIn`s."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from docent.ingest import DocumentIn

SUFFIXES = {".md", ".mdx", ".markdown", ".html", ".htm", ".txt", ".text", ".pdf"}


def document_from_bytes(data: bytes, name: str, document_id: str) -> DocumentIn:
    """A document from a file's bytes; the format comes from the name's extension."""
    from docent.parsing import extract

    text, fmt = extract(data, name)
    return DocumentIn(id=document_id, text=text, format=fmt)


def find_files(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """(file, document id) for each supported file under `paths`; ids are relative paths."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        root = Path(raw)
        if root.is_file():
            found.append((root, root.name))
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix.lower() in SUFFIXES and not _hidden(path, root):
                found.append((path, path.relative_to(root).as_posix()))
    return found


def read_documents(files: Iterable[tuple[Path, str]]) -> Iterator[DocumentIn]:
    for path, document_id in files:
        yield document_from_bytes(path.read_bytes(), path.name, document_id)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
