"""Documents from files: folders of .md/.mdx/.html/.txt/.pdf become `DocumentIn`s."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from docent.ingest import DocumentIn

SUFFIXES = {".md", ".mdx", ".markdown", ".html", ".htm", ".txt", ".text", ".pdf"}


def document_from_bytes(data: bytes, name: str, document_id: str) -> DocumentIn:
    """A document from a file's bytes; the format comes from the name's extension."""
    from docent.config import get_settings
    from docent.parsing import extract

    text, fmt = extract(data, name, get_settings().parse_timeout_s)
    return DocumentIn(id=document_id, text=text, format=fmt)


def docent_docs() -> Path | None:
    """Docent's own documentation: the sample corpus (`SAMPLE_CORPUS=docent`).

    Installed as data files (`<prefix>/share/docent/docs`, where the Spaces image has them), or
    beside the code in a source checkout. Never looked up in the working directory.
    """
    import sys

    installed = Path(sys.prefix) / "share" / "docent" / "docs"
    if (installed / "getting-started.md").is_file():
        return installed
    checkout = Path(__file__).resolve().parents[3]  # <checkout>/layers/common/docent/corpus.py
    if (checkout / "layers" / "common" / "docent").is_dir():  # Docent's own source tree
        return checkout / "docs"
    return None


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
