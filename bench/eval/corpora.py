"""The documentation sets the eval runs on: Debian doc packages, fetched once into a cache.

Each set is a real site that nobody here wrote, as its Debian `*-doc` package ships it (built
HTML). `apt-get download` fetches the package (no install, no root needed beyond apt's lists),
`dpkg-deb -x` unpacks it, and the pages the set selects are copied into
`$DOCENT_CACHE/eval/<name>/` (git-ignored, outside the repo), where later runs find them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("DOCENT_CACHE", Path.home() / ".cache" / "docent")) / "eval"


@dataclass(frozen=True)
class Corpus:
    """One documentation set: where its pages sit in a package and where they live online."""

    name: str
    package: str
    root: str  # the site's folder inside the package
    include: tuple[str, ...]  # globs under `root`
    exclude: tuple[str, ...]
    base_url: str
    # Which pool its figures join (`POOLS`): the tuning sets, the first held-out pair (written
    # before any tuning, but read question by question since), or the fresh sets (written blind
    # by someone who never saw Docent's retrieval, and not read by its developers before their
    # first figures were recorded): the fresh pair of the morning of 2026-11-27, read and tuned
    # on since, and the third pair of its evening. Each pool is reported apart.
    pool: str = "tuning"
    # The site serves `a/b.html` as `a/b/` (MkDocs' directory URLs), though the package's
    # build wrote plain files.
    directory_urls: bool = False

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"{self.name}: pool {self.pool!r} is not one of {POOLS}")

    def url(self, page: str) -> str:
        """The page's public address (a folder's index.html is served as the folder)."""
        path = page.removesuffix("index.html")
        if self.directory_urls and path.endswith(".html"):
            path = path.removesuffix(".html") + "/"
        return self.base_url + path


POOLS = ("tuning", "held out", "fresh", "third pair", "fourth pair", "fifth pair")


CORPORA = (
    # Django REST framework's MkDocs site: api guide, tutorial, topics, and its release notes
    # and announcements (the changelog-like pages that can crowd out guides).
    Corpus(
        "drf",
        "python-djangorestframework-doc",
        "usr/share/doc/python3-djangorestframework/html",
        ("**/index.html",),
        ("search/*",),
        "https://www.django-rest-framework.org/",
    ),
    # Python's Sphinx docs: the tutorial and the HOWTOs.
    Corpus(
        "python",
        "python3.11-doc",
        "usr/share/doc/python3.11/html",
        ("tutorial/*.html", "howto/*.html"),
        (),
        "https://docs.python.org/3.11/",
    ),
    # Flask's Sphinx docs, the held-out set: user guide, patterns, deployment, tutorial, its
    # API reference and changelog (generated indexes left out).
    Corpus(
        "flask",
        "python-flask-doc",
        "usr/share/doc/python-flask-doc/html",
        ("*.html", "*/*.html"),
        ("genindex.html", "search.html", "py-modindex.html", "404.html"),
        "https://flask.palletsprojects.com/en/2.2.x/",
        pool="held out",
    ),
    # Click's Sphinx docs, held out too (its questions written later; both held-out sets' results
    # have been read question by question since, so they are not blind any more).
    Corpus(
        "click",
        "python-click-doc",
        "usr/share/doc/python-click-doc/html",
        ("*.html",),
        ("genindex.html", "search.html", "py-modindex.html", "404.html"),
        "https://click.palletsprojects.com/en/8.1.x/",
        pool="held out",
    ),
    # The fresh pair (2026-11-27), questions in `questions/aiohttp.jsonl` and `markdown.jsonl`:
    # aiohttp's Sphinx docs (guides beside two large API reference pages) ...
    Corpus(
        "aiohttp",
        "python-aiohttp-doc",
        "usr/share/doc/python-aiohttp-doc/html",
        ("*.html",),
        ("genindex.html", "search.html", "py-modindex.html"),
        "https://docs.aiohttp.org/en/v3.8.4/",
        pool="fresh",
    ),
    # ... and Python-Markdown's MkDocs site (its extensions' pages and release notes).
    Corpus(
        "markdown",
        "python-markdown-doc",
        "usr/share/doc/python-markdown-doc/docs",
        ("*.html", "extensions/*.html", "change_log/*.html"),
        ("404.html", "search.html", "sitemap.html"),
        "https://python-markdown.github.io/",
        pool="fresh",
        directory_urls=True,
    ),
    # The third pair (2026-11-27 evening), written blind like the fresh pair, after every change
    # the fresh pair was read for: coverage.py's Sphinx docs (its changelog among them) ...
    Corpus(
        "coverage",
        "python-coverage-doc",
        "usr/share/doc/python-coverage-doc/html",
        ("*.html",),
        ("genindex.html", "search.html", "py-modindex.html", "404.html"),
        "https://coverage.readthedocs.io/en/6.5.0/",
        pool="third pair",
    ),
    # ... and MkDocs' own MkDocs site (three "Redirecting..." stubs of moved pages left out).
    Corpus(
        "mkdocs",
        "mkdocs-doc",
        "usr/share/doc/mkdocs/html",
        ("*.html", "*/*.html"),
        (
            "404.html",
            "search.html",
            "user-guide/custom-themes.html",
            "user-guide/plugins.html",
            "user-guide/styling-your-docs.html",
        ),
        "https://www.mkdocs.org/",
        pool="third pair",
        directory_urls=True,
    ),
    # The fourth pair (2026-11-28), written blind like the third: Requests' Sphinx docs (user
    # guide, community pages with the changelog, API reference; served as dirhtml) ...
    Corpus(
        "requests",
        "python-requests-doc",
        "usr/share/doc/python-requests-doc/html",
        ("*.html", "user/*.html", "community/*.html", "dev/*.html"),
        ("genindex.html", "search.html", "py-modindex.html", "404.html"),
        "https://requests.readthedocs.io/en/v2.28.1/",
        pool="fourth pair",
        directory_urls=True,
    ),
    # ... and guizero's MkDocs site (usage guides, one page per widget, its changelog).
    Corpus(
        "guizero",
        "python-guizero-doc",
        "usr/share/doc/python-guizero-doc/html",
        ("*.html",),
        ("404.html", "search.html", "sitemap.html"),
        "https://lawsie.github.io/guizero/",
        pool="fourth pair",
        directory_urls=True,
    ),
    # The fifth pair (2026-11-29), written blind like the others (`questions/FIFTH_PAIR.md`):
    # Jinja's Sphinx docs (templates, API, extensions, FAQ; 13 pages, two of them long) ...
    Corpus(
        "jinja",
        "python-jinja2-doc",
        "usr/share/doc/python-jinja2-doc/html",
        ("*.html",),
        ("genindex.html", "search.html", "py-modindex.html", "404.html"),
        "https://jinja.palletsprojects.com/en/3.1.x/",
        pool="fifth pair",
        directory_urls=True,
    ),
    # ... and structlog's (guides, processors, integrations, API; its changelog ships gzipped).
    Corpus(
        "structlog",
        "python-structlog-doc",
        "usr/share/doc/python-structlog-doc/html",
        ("*.html",),
        (
            "genindex.html",
            "search.html",
            "py-modindex.html",
            "404.html",
            "_modules/*.html",
            "_modules/*/*.html",
        ),
        "https://www.structlog.org/en/22.3.0/",
        pool="fifth pair",
    ),
)


def by_name(names: Sequence[str] | None = None) -> list[Corpus]:
    wanted = list(names) if names else [c.name for c in CORPORA]
    known = {c.name: c for c in CORPORA}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SystemExit(f"unknown corpus {unknown}: choose from {sorted(known)}")
    return [known[n] for n in wanted]


def pages(corpus: Corpus, cache: Path = CACHE) -> dict[str, Path]:
    """The corpus's pages (relative path -> file), fetched into the cache on first use."""
    folder = cache / corpus.name
    if not (folder / "manifest.json").exists():
        fetch(corpus, folder)
    files = folder / "files"
    return {p.relative_to(files).as_posix(): p for p in sorted(files.rglob("*.html"))}


def manifest(corpus: Corpus, cache: Path = CACHE) -> dict[str, object]:
    data: dict[str, object] = json.loads((cache / corpus.name / "manifest.json").read_text())
    return data


def fetch(corpus: Corpus, folder: Path) -> None:
    """Download the package, unpack it, keep the selected pages; the manifest is written last."""
    with tempfile.TemporaryDirectory(prefix="docent-eval-") as tmp:
        work = Path(tmp)
        done = _download(corpus.package, work)
        if done.returncode != 0 and os.geteuid() == 0:
            # A fresh machine has no package lists yet: read them once, then try again.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
            done = _download(corpus.package, work)
        debs = list(work.glob("*.deb"))
        if done.returncode != 0 or not debs:
            raise SystemExit(
                f"apt-get download {corpus.package} failed ({done.stderr.strip()[-300:]}): "
                "run `apt-get update` first"
            )
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(work / "x")], check=True, timeout=300)
        root = work / "x" / corpus.root
        selected = {p for pattern in corpus.include for p in root.glob(pattern) if p.is_file()}
        selected = {
            p
            for p in selected
            if not any(p.relative_to(root).match(pattern) for pattern in corpus.exclude)
        }
        if not selected:
            raise SystemExit(f"{corpus.package}: no pages under {corpus.root}")
        if folder.exists():
            shutil.rmtree(folder)
        files = folder / "files"
        for path in sorted(selected):
            target = files / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        version = debs[0].name.split("_")[1]
        (folder / "manifest.json").write_text(
            json.dumps(
                {"package": corpus.package, "version": version, "pages": len(selected)}, indent=1
            )
        )


def _download(package: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "download", package],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
