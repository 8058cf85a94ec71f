"""Site profiles without building anything: GitHub's documented slug rules, includes, globs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from docent.anchors import AnchorStyle, github_slug
from docent.parsing import parse
from docent.sites import SiteOptions, Skipped, detect, glob_regex, plan
from docent.sites.docusaurus import slug_for, strip_number_prefix
from docent.sites.includes import MAX_DEPTH, resolve_includes
from docent.sites.mkdocs import anchor_style, read_config

SITES = Path(__file__).parent / "fixtures" / "sites"

# GitHub's documented rules ("Section links", Basic writing and formatting syntax): lower-case;
# spaces to hyphens; other whitespace and punctuation removed; markup removed, its content kept;
# a repeat gets a hyphen and an auto-incrementing integer. The documented example, then one row
# per rule.
GITHUB_DOCUMENTED = [
    ("# Example headings", "example-headings"),
    ("## Sample Section", "sample-section"),
    (
        "## This'll be a _Helpful_ Section About the Greek Letter Θ!",
        "thisll-be-a-helpful-section-about-the-greek-letter-θ",
    ),
    ("## This heading is not unique in the file", "this-heading-is-not-unique-in-the-file"),
    ("## This heading is not unique in the file", "this-heading-is-not-unique-in-the-file-1"),
    ("# Links to the example headings above", "links-to-the-example-headings-above"),
    ("## UPPER lower", "upper-lower"),
    ("## Tabs\tand\u00a0no-break spaces", "tabsandno-break-spaces"),
    ("## Punctuation: (a), [b]; c! d? e/f", "punctuation-a-b-c-d-ef"),
    ("## **Bold** and `code()` and [link](https://x.test)", "bold-and-code-and-link"),
    ("## snake_case stays", "snake_case-stays"),
    ("## Sample Section", "sample-section-1"),
]


def test_github_slugs_follow_the_documented_rules() -> None:
    text = "\n\n".join(f"{heading}\n\nText." for heading, _ in GITHUB_DOCUMENTED)
    parsed = parse(text, "markdown", "github")
    assert [s.anchor for s in parsed.sections] == [slug for _, slug in GITHUB_DOCUMENTED]


def test_github_slugger_counts_repeats_as_github_slugger_does() -> None:
    style = AnchorStyle(name="github")
    headings = [(2, t) for t in ("Repeat", "Repeat-1", "Repeat", "🎉", "Foo {#bar}")]
    assert [a for _, a in style.assign(headings)] == [
        "repeat", "repeat-1", "repeat-2", None, "foo-bar"
    ]  # fmt: skip
    assert github_slug("Café Ünïcödé 中文") == "café-ünïcödé-中文"


def test_github_repository_urls_are_blob_paths(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# Project\n\n## Install it\n\nRun it.\n")
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\nText.\n")
    (tmp_path / "notes.txt").write_text("not markdown: GitHub shows it raw")
    base = "https://github.com/acme/project/blob/main"

    site_plan = plan(tmp_path, SiteOptions(base_url=base))
    doc = site_plan.read(site_plan.pages[0])

    assert site_plan.site == "github" == detect(tmp_path)
    assert [(p.document_id, p.url) for p in site_plan.pages] == [
        ("README.md", f"{base}/README.md"),
        ("docs/guide.md", f"{base}/docs/guide.md"),
    ]
    assert doc.metadata == {"source": str(tmp_path.resolve()), "anchors": "github"}
    anchors = [s.anchor for s in parse(doc.text, doc.format, doc.metadata["anchors"]).sections]
    assert anchors == ["install-it"]  # "# Project" holds no text of its own


def test_plain_folders_honour_explicit_ids_and_hide_them() -> None:
    parsed = parse("## Use it { #use-it .x }\n\nA.\n\n## Other {#other-id}\n\nB.\n", "markdown")
    assert [(s.headings, s.anchor) for s in parsed.sections] == [
        (("Use it",), "use-it"),
        (("Other",), "other-id"),
    ]


def test_mkdocs_config_with_python_tags_is_read() -> None:
    config = read_config(SITES / "mkdocs" / "mkdocs.yml")
    assert config["site_url"] == "https://docs.example.test/fixture/"
    assert anchor_style(config) == AnchorStyle(name="mkdocs")


def test_mkdocs_pages_includes_and_search_exclusion(tmp_path: Path) -> None:
    project = tmp_path / "mkdocs"
    shutil.copytree(SITES / "mkdocs", project)
    site_plan = plan(project, SiteOptions(exclude=("guide/install.md",)))

    ids = [p.document_id for p in site_plan.pages]
    assert ids == ["docs/guide/hidden.md", "docs/index.md"]  # drafts/ by exclude_docs
    with pytest.raises(Skipped, match="search"):
        site_plan.read(site_plan.pages[0])
    front = site_plan.read(site_plan.pages[1])
    assert front.url == "https://docs.example.test/fixture/"
    assert "rotate the frobnicator weekly" in front.text  # --8<-- "shared.md" from snippets/
    assert "```python\nfrom fastapi import FastAPI" in front.text  # {* ... *}
    assert "8<" not in front.text and "{*" not in front.text  # unresolved ones dropped
    assert "root:" not in front.text  # ../../../../etc/passwd is outside the project


def test_includes_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "loop.md").write_text('loop line\n--8<-- "loop.md"\n')
    (tmp_path / "big.md").write_text("x" * (2 * 1024 * 1024))
    (tmp_path / "ranges.py").write_text("".join(f"line {n}\n" for n in range(1, 11)))
    (tmp_path / "sections.md").write_text(
        "before\n# --8<-- [start:part]\ninside part\n# --8<-- [end:part]\nafter\n"
    )
    outside = tmp_path.parent / "outside-secret.md"
    outside.write_text("secret outside the root")
    page = tmp_path / "page.md"
    text = (
        '--8<-- "loop.md"\n--8<-- "big.md"\n--8<-- "ranges.py:2:3"\n'
        '--8<-- "sections.md:part"\n;--8<-- "escaped.md"\n'
        f'--8<-- "../{outside.name}"\n'
        "{* ranges.py ln[9:10] *}\n"
        "--8<--\nloop.md\nmissing.md\n--8<--\nend"
    )

    out = resolve_includes(text, page, tmp_path, [tmp_path])

    assert out.count("loop line") == MAX_DEPTH * 2  # nested only MAX_DEPTH deep, twice
    assert "xxxx" not in out  # larger than the include limit
    assert "line 2\nline 3\n" in out and "line 4" not in out.split("```")[0]
    assert "inside part" in out and "before" not in out
    assert '--8<-- "escaped.md"' in out  # an escaped marker is text, without its `;`
    assert "secret" not in out
    assert "```python\nline 9\nline 10\n```" in out
    assert out.endswith("end") and "missing" not in out


def test_globs_match_like_gitignore() -> None:
    assert glob_regex("release-notes.md").match("docs/release-notes.md")
    assert glob_regex("docs/api/**").match("docs/api/x/y.md")
    assert not glob_regex("docs/api/**").match("docs/apix/y.md")
    assert glob_regex("*.txt").match("a/b/c.txt") and not glob_regex("*.txt").match("a.md")
    assert glob_regex("drafts/").match("drafts/wip.md")


def test_docusaurus_slugs() -> None:
    assert strip_number_prefix("01-intro") == "intro"
    assert strip_number_prefix("003 - Intro") == "Intro"
    assert strip_number_prefix("2021-11-notes") == "2021-11-notes"
    assert slug_for("01-guides/02-setup.md", {}) == "/guides/setup"
    assert slug_for("01-guides/01-guides.md", {}) == "/guides/"
    assert slug_for("a/README.md", {}) == "/a/"
    assert slug_for("a/b.md", {"id": "custom"}) == "/a/custom"
    assert slug_for("a/b.md", {"slug": "rel"}) == "/a/rel"
    assert slug_for("a/b.md", {"slug": "/abs/x"}) == "/abs/x"


def test_detect_and_override(tmp_path: Path) -> None:
    assert detect(tmp_path) == "plain"
    (tmp_path / "conf.py").write_text("project = 'x'\n")
    assert detect(tmp_path) == "sphinx"
    (tmp_path / "a.md").write_text("# A\n\nText.\n")
    forced = plan(tmp_path, SiteOptions(site="plain"))
    assert [p.document_id for p in forced.pages] == ["a.md"]


def test_a_sphinx_source_folder_without_a_build_says_how_to_build(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text("project = 'x'\n")
    from docent.errors import DocumentError

    with pytest.raises(DocumentError, match="sphinx-build"):
        plan(tmp_path)


@pytest.mark.slow
def test_docent_ingest_of_an_mkdocs_project_answers_with_deep_links(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.support.servers import free_port

    project = tmp_path / "mkdocs"
    shutil.copytree(SITES / "mkdocs", project)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "QDRANT_PATH": str(tmp_path / "data" / "qdrant"),
        "DOCENT_URL": f"http://127.0.0.1:{free_port()}",
        "SAMPLE_CORPUS": "",
    }

    def docent(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "docent.cli", *args],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    ingested = docent("ingest", str(project), "--exclude", "guide/install.md")
    answer = docent("ask", "How often should the frobnicator be rotated?")

    assert ingested.returncode == 0, ingested.stderr
    counts = json.loads(ingested.stdout.strip().splitlines()[-1])
    assert counts["documents"] == 1 and counts["added"] == 1  # hidden.md: search exclude
    assert "skipped docs/guide/hidden.md: excluded from search" in ingested.stderr
    assert "chunks=" in ingested.stderr  # running chunk count on the progress bar
    assert answer.returncode == 0, answer.stderr
    assert "https://docs.example.test/fixture/#snippet-included" in answer.stdout


def test_built_html_anchors_are_only_the_ids_it_carries() -> None:
    html = (
        "<html><body><h1>Title</h1><p>Intro.</p>"
        '<section id="install"><h2>Install<a class="headerlink" href="#install">¶</a></h2>'
        "<p>Run it.</p></section><h2>No id here</h2><p>Text.</p></body></html>"
    )
    sections = parse(html, "html", "html").sections
    assert [(s.headings[-1], s.anchor) for s in sections] == [
        ("Title", None),
        ("Install", "install"),  # the section's id, the permalink dropped from the text
        ("No id here", None),
    ]
    assert [s.anchor for s in parse(html, "html").sections] == ["title", "install", "no-id-here"]


def test_mkdocs_site_url_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "mkdocs"
    shutil.copytree(SITES / "mkdocs", project)
    config = project / "mkdocs.yml"
    config.write_text(
        config.read_text().replace(
            "site_url: https://docs.example.test/fixture/",
            "site_url: !ENV [DOCS_SITE_URL, 'https://default.example.test/']",
        )
    )
    assert plan(project).pages[0].url == "https://default.example.test/guide/hidden/"
    monkeypatch.setenv("DOCS_SITE_URL", "https://env.example.test/")
    assert plan(project).pages[0].url == "https://env.example.test/guide/hidden/"


def test_a_heading_inside_a_blockquote_still_takes_its_id() -> None:
    text = "## Note\n\nA.\n\n> ## Note\n>\n> Quoted.\n\n## Note\n\nB.\n"
    assert [s.anchor for s in parse(text, "markdown", "mkdocs").sections] == ["note", "note_2"]
    assert [s.anchor for s in parse(text, "markdown", "github").sections] == ["note", "note-2"]


def test_mkdocstrings_stub_pages_are_skipped_and_directives_dropped(tmp_path: Path) -> None:
    from docent.sites.mkdocs import drop_autodoc

    project = tmp_path / "mkdocs"
    shutil.copytree(SITES / "mkdocs", project)
    (project / "docs" / "reference").mkdir()
    (project / "docs" / "reference" / "app.md").write_text(
        "# `App` class\n\n::: fastapi.FastAPI\n    options:\n      members:\n        - get\n"
    )
    site_plan = plan(project)
    stub = next(p for p in site_plan.pages if p.document_id == "docs/reference/app.md")

    with pytest.raises(Skipped, match="API reference stub"):
        site_plan.read(stub)
    text, dropped = drop_autodoc(
        "# API\n\nIntro.\n\n::: pkg.mod\n    options:\n      x: 1\n\nAfter.\n"
    )
    assert dropped == 1 and text == "# API\n\nIntro.\n\nAfter.\n"


def test_docusaurus_partials_and_raw_code_imports_are_resolved(tmp_path: Path) -> None:
    from docent.sites.includes import resolve_mdx_imports

    (tmp_path / "docs" / "_partials").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    (tmp_path / "docs" / "_partials" / "_note.mdx").write_text(
        "---\nsidebar_label: x\n---\n## Partial heading\n\nPartial text about quotas.\n"
    )
    (tmp_path / "src" / "app.py").write_text("print('included code')\n")
    page = tmp_path / "docs" / "page.mdx"
    text = (
        "import Note from './_partials/_note.mdx';\n"
        "import CodeBlock from '@theme/CodeBlock';\n"
        "import Source from '!!raw-loader!../src/app.py';\n"
        "import Missing from './_partials/_gone.mdx';\n\n"
        '# Page\n\n<Note />\n\n<CodeBlock language="python">{Source}</CodeBlock>\n\n<Missing />\n'
    )

    out = resolve_mdx_imports(text, page, tmp_path)
    parsed = parse(out, "markdown", "docusaurus")

    assert "Partial text about quotas." in out and "## Partial heading" not in out
    assert "```python\nprint('included code')\n```" in out
    assert "<Missing />" not in out
    assert [s.headings for s in parsed.sections] == [("Page",)]


def test_a_bare_repository_url_gets_the_checked_out_branch(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/trunk\n")
    (tmp_path / "README.md").write_text("# Project\n\nText.\n")
    site_plan = plan(tmp_path, SiteOptions(base_url="https://github.com/acme/project"))
    assert site_plan.pages[0].url == "https://github.com/acme/project/blob/trunk/README.md"
