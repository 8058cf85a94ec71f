"""Documents to sections: markdown/MDX, HTML, text, PDF, hostile files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from docent.errors import DocumentError
from docent.parsing import extract, parse, slugify

FIXTURES = Path(__file__).parent / "fixtures"


def test_markdown_front_matter_headings_and_code() -> None:
    doc = parse((FIXTURES / "corpus" / "install.md").read_text(), "markdown")
    assert doc.title == "Installing Acme"
    assert doc.metadata["url"] == "https://docs.acme.test/install"
    by_heading = {s.headings[-1]: s for s in doc.sections}
    pip = by_heading["Install with pip"]
    assert pip.headings == ("Installing Acme", "Install with pip")
    assert pip.anchor == "install-with-pip"
    assert [b.kind for b in pip.blocks] == ["text", "code", "text"]
    assert pip.blocks[1].text == "```bash\npip install acme-server\n```"


def test_mdx_drops_imports_and_component_tags_but_keeps_their_text() -> None:
    mdx = (
        'import Tabs from "@theme/Tabs";\n\n# Setup\n\n<Tabs>\n<TabItem value="a">\n\n'
        "Inside the tab.\n\n</TabItem>\n</Tabs>\n\n```js\nimport x from 'y';\n```\n"
    )
    doc = parse(mdx, "markdown")
    texts = [b.text for s in doc.sections for b in s.blocks]
    assert texts == ["Inside the tab.", "```js\nimport x from 'y';\n```"]


def test_duplicate_headings_get_numbered_anchors() -> None:
    doc = parse("# A\n\nx\n\n## Notes\n\ny\n\n## Notes\n\nz\n", "markdown")
    assert [s.anchor for s in doc.sections] == ["a", "notes", "notes-1"]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Install with pip", "install-with-pip"),
        ("What's new in 2.0?", "whats-new-in-20"),
        ("Über Straße", "über-straße"),
        ("snake_case and kebab-case", "snake_case-and-kebab-case"),
    ],
)
def test_slugs_match_github(heading: str, slug: str) -> None:
    assert slugify(heading) == slug


def test_html_keeps_text_and_headings_and_drops_scripts() -> None:
    html = """<html><head><title>Guide</title><script>steal()</script></head><body>
    <nav>Home | Docs</nav><h1>Guide</h1><p>Intro <b>text</b>.</p>
    <h2 id="setup-id">Setup</h2><pre>make run</pre><ul><li>one</li><li>two</li></ul>
    <script>alert('x')</script><footer>(c) Acme</footer></body></html>"""
    doc = parse(html, "html")
    assert doc.title == "Guide"
    assert [(s.headings, s.anchor) for s in doc.sections] == [
        (("Guide",), "guide"),
        (("Guide", "Setup"), "setup-id"),
    ]
    text = " ".join(b.text for s in doc.sections for b in s.blocks)
    assert "steal" not in text and "alert" not in text and "Home" not in text and "(c)" not in text
    assert "```\nmake run\n```" in text and "- one\n- two" in text


def test_plain_text_splits_paragraphs() -> None:
    doc = parse("First paragraph.\n\nSecond one.\n", "text")
    assert [b.text for b in doc.sections[0].blocks] == ["First paragraph.", "Second one."]
    assert doc.sections[0].headings == () and doc.sections[0].anchor is None


def test_extract_by_extension_and_pdf_text() -> None:
    assert extract(b"# Hi", "a.MDX") == ("# Hi", "markdown")
    assert extract("\ufeffplain".encode(), "a.txt") == ("plain", "text")
    text, fmt = extract((FIXTURES / "documents" / "handbook.pdf").read_bytes(), "handbook.pdf")
    assert fmt == "text"
    assert "widget ships in blue" in text and "returns within thirty days" in text


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"\x00\x01binary", "evil.md", "binary data"),
        (b"\xff\xfe\xfa", "latin.txt", "not valid UTF-8"),
        (b"%PDF-1.4 not really", "broken.pdf", "not a readable PDF"),
        (b"x", "archive.zip", "unsupported file type"),
    ],
)
def test_hostile_files_are_refused_clearly(data: bytes, name: str, message: str) -> None:
    with pytest.raises(DocumentError, match=message) as caught:
        extract(data, name)
    assert name in caught.value.message


def bomb_pdf(expanded_mb: int) -> bytes:
    """A one-page PDF whose content stream inflates to `expanded_mb` MB (a compression bomb)."""
    import zlib

    squeeze = zlib.compressobj(9)
    block = b"BT /F1 12 Tf 72 720 Td (bomb) Tj ET\n" * (1024 * 1024 // 36)
    stream = b"".join(squeeze.compress(block) for _ in range(expanded_mb)) + squeeze.flush()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_a_pdf_compression_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    """1 MB on disk, 400 MB inflated: refused by name, and the worker's memory stays bounded."""
    import subprocess
    import sys

    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(bomb_pdf(400))
    assert bomb.stat().st_size < 2 * 1024 * 1024
    with pytest.raises(DocumentError, match="expands beyond the size limit"):
        extract(bomb.read_bytes(), "bomb.pdf")
    # Peak memory of a fresh process doing the same: far below what the bomb inflates to.
    # VmHWM is the peak of this process's own memory; ru_maxrss would include the parent's RSS
    # at fork (Linux carries it across exec), which is the whole test session's.
    probe = (
        "import re\n"
        "from docent.parsing import extract\n"
        "from docent.errors import DocumentError\n"
        "try:\n"
        f"    extract(open({str(bomb)!r}, 'rb').read(), 'bomb.pdf')\n"
        "except DocumentError:\n"
        "    pass\n"
        "status = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) // 1024)\n"
    )
    peak_mb = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                 check=True).stdout)  # fmt: skip
    assert peak_mb < 250, f"peak RSS {peak_mb} MB"


def test_html_site_chrome_is_left_out_and_the_marked_content_kept() -> None:
    # GIVEN a Sphinx page (sidebars marked by role) and an MkDocs page (content in #main-content)
    sphinx = (
        '<div class="related" role="navigation"><ul><li>previous</li><li>next</li></ul></div>'
        '<div class="body" role="main"><section id="sorting-basics"><h2>Sorting Basics</h2>'
        "<p>A simple ascending sort is very easy.</p></section></div>"
        '<div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3>'
        "<ul><li>Sorting HOW TO</li></ul></div>"
    )
    mkdocs = (
        '<div class="navbar"><ul><li>API Guide</li><li>Throttling</li></ul></div>'
        '<div class="span3"><div id="table-of-contents"><ul><li>Throttling</li></ul></div></div>'
        '<div id="main-content" class="span9"><h1 id="throttling">Throttling</h1>'
        "<p>Throttling is similar to permissions.</p></div>"
    )
    # WHEN they are parsed
    for page, heading, text in (
        (sphinx, "Sorting Basics", "A simple ascending sort is very easy."),
        (mkdocs, "Throttling", "Throttling is similar to permissions."),
    ):
        doc = parse(f"<html><body>{page}</body></html>", "html")
        # THEN only the content's sections remain, without the navigation's lists
        assert [(s.headings[-1], [b.text for b in s.blocks]) for s in doc.sections] == [
            (heading, [text])
        ]


def test_a_sphinx_toctree_is_navigation_and_left_out() -> None:
    # GIVEN a Sphinx index page: an introduction, then the toctree listing other pages' headings
    page = (
        '<div class="body" role="main"><section id="welcome"><h1>Welcome</h1>'
        "<p>Click is a Python package for creating command line interfaces.</p>"
        '<div class="toctree-wrapper compound"><ul><li><a href="options.html">Options</a>'
        '<ul><li><a href="options.html#counting">Counting</a></li></ul></li></ul></div>'
        "</section></div>"
    )
    # WHEN it is parsed
    doc = parse(f"<html><body>{page}</body></html>", "html")
    # THEN the introduction is kept and the table of contents is not
    assert [[b.text for b in s.blocks] for s in doc.sections] == [
        ["Click is a Python package for creating command line interfaces."]
    ]


@pytest.mark.slow
def test_the_real_python_tutorial_index_keeps_its_prose_but_not_its_toctree() -> None:
    from bench.eval import corpora

    # GIVEN the tutorial's index page as python3.11-doc ships it (Sphinx 5 HTML)
    pages = corpora.pages(corpora.by_name(["python"])[0])
    html = pages["tutorial/index.html"].read_text()
    assert 'class="toctree-wrapper' in html
    # WHEN it is parsed
    text = "\n".join(b.text for s in parse(html, "html").sections for b in s.blocks)
    # THEN its introduction is there, and none of the chapter titles its toctree lists
    assert "Python is an easy to learn, powerful programming language." in text
    assert "Whetting Your Appetite" in html and "Whetting Your Appetite" not in text
    assert "More Control Flow Tools" not in text


def test_heading_markup_is_read_though_paragraphs_are_not_parsed_inline() -> None:
    """Only headings get their inline markup parsed (chunks are source slices); a reference
    link in a heading still resolves against the document's link definitions."""
    doc = parse(
        "# Title *em*\n\n## See [the guide][g] and `code`\n\nText with [a link][g].\n\n"
        "[g]: https://x.test\n",
        "markdown",
        None,
    )
    assert doc.title == "Title em"
    assert doc.sections[-1].headings == ("Title em", "See the guide and code")
    assert doc.sections[-1].anchor == "see-the-guide-and-code"
    assert doc.sections[-1].blocks[0].text == "Text with [a link][g]."


def test_inline_markup_runs_on_into_the_words_and_stops_around_it() -> None:
    # GIVEN Sphinx-shaped HTML: inline code, a link and emphasis between words and punctuation;
    # text and a link loose in a container; a list item holding a paragraph; a line break
    html = (
        '<div role="main"><p>Use <code class="docutils literal"><span class="pre">get()</span>'
        '</code>, then <a href="#x">the <em>guide</em></a>.</p>'
        "<div>Loose text with <a href='#y'>a link</a>, on one line</div>"
        "<ul><li>first<p>its detail</p></li><li>second<br>line</li></ul></div>"
    )
    # WHEN it is parsed
    blocks = [b.text for s in parse(html, "html").sections for b in s.blocks]
    # THEN each paragraph reads as the page does: no space before its commas and full stops, one
    # block for a run of inline text, and a block's words kept apart from the next block's
    assert blocks == [
        "Use get(), then the guide.",
        "Loose text with a link, on one line",
        "- first its detail\n- second line",
    ]


def test_a_nested_list_is_read_once_under_its_item_and_an_items_code_stays_code() -> None:
    # GIVEN a list with a nested list, and an item that introduces an example (Sphinx wraps it
    # in a highlight <div>) and goes on after it
    html = (
        "<main><ul><li>Alpha item.<ul><li>Beta nested.</li><li>Gamma nested.</li></ul></li>"
        '<li>Delta item, like this:<div class="highlight"><pre>x = 1\ny = 2</pre></div>'
        "And after.</li><li>Last <code>one</code>.</li></ul></main>"
    )
    # WHEN it is parsed
    blocks = [(b.kind, b.text) for s in parse(html, "html").sections for b in s.blocks]
    # THEN each item is there once, the nested ones indented under theirs (before, "Beta nested."
    # and "Gamma nested." came twice: in their parent's text and as items), and the example is a
    # code block with its lines, between the list's two parts
    assert blocks == [
        ("list", "- Alpha item.\n  - Beta nested.\n  - Gamma nested.\n- Delta item, like this:"),
        ("code", "```\nx = 1\ny = 2\n```"),
        ("list", "  And after.\n- Last one."),
    ]


def test_an_ordered_list_is_numbered_and_its_nested_lists_sit_under_its_items_text() -> None:
    # GIVEN numbered steps (one with a bulleted list inside, one list going on from 4), and a
    # bulleted list
    html = (
        "<main><p>Steps:</p><ol><li>Install it.</li><li>Run it:<ul><li>fast<ol><li>x</li></ol>"
        '</li><li>slow</li></ul>then stop.</li></ol><ol start="4"><li>Four.</li></ol>'
        "<ul><li>a<ul><li>b</li></ul></li></ul></main>"
    )
    # WHEN it is parsed
    blocks = [b.text for s in parse(html, "html").sections for b in s.blocks]
    # THEN the steps are numbered as the page shows them (before, every list was bulleted, so
    # an answer could not tell steps to follow in order from a list of options), and a nested
    # list is indented to its item's text, where markdown nests it
    assert blocks == [
        "Steps:",
        "1. Install it.\n2. Run it:\n   - fast\n     1. x\n   - slow\n   then stop.",
        "4. Four.",
        "- a\n  - b",
    ]


def test_an_admonitions_title_opens_its_first_paragraph() -> None:
    # GIVEN Sphinx's and MkDocs' admonitions (the same markup): a note with a paragraph, a
    # warning with a list, and a tip with nothing after its title
    html = (
        '<main><p>Intro.</p><div class="admonition note"><p class="admonition-title">Note</p>'
        "<p>Sessions are <em>not</em> thread safe.</p></div>"
        '<div class="admonition warning"><p class="admonition-title">Warning:</p>'
        '<ul><li>one</li></ul></div><div class="admonition tip">'
        '<p class="admonition-title">Tip</p></div><h2>Next</h2><p>More.</p></main>'
    )
    # WHEN it is parsed
    sections = parse(html, "html").sections
    # THEN a title opens the paragraph it heads, in bold, instead of standing alone as a
    # one-word paragraph ("Note") that an answer could quote; before a list, or with nothing
    # after it, it stays a block of its own, in its own section
    assert [b.text for b in sections[0].blocks] == [
        "Intro.",
        "**Note:** Sessions are not thread safe.",
        "**Warning:**",
        "- one",
        "**Tip:**",
    ]
    assert [b.text for b in sections[1].blocks] == ["More."]


@pytest.mark.slow
def test_sphinx_autodoc_definitions_are_read_as_their_paragraphs_and_examples() -> None:
    from bench.eval import corpora

    # GIVEN Requests 2.28.1's API page as python-requests-doc ships it (Sphinx autodoc): each
    # class's docstring, examples and members are in one <dd>
    pages = corpora.pages(corpora.by_name(["requests"])[0])
    html = pages["api.html"].read_text()
    assert '<dl class="py class">' in html
    # WHEN it is parsed
    blocks = [b for s in parse(html, "html").sections for b in s.blocks]
    texts = [b.text for b in blocks]
    # THEN a member's description is a paragraph of its own, as the page shows it (before, the
    # whole Session class ran on as one 1,301-word paragraph)
    assert (
        "Maximum number of redirects allowed. If the request exceeds this limit, a "
        "TooManyRedirects exception is raised. This defaults to "
        "requests.models.DEFAULT_REDIRECT_LIMIT, which is 30."
    ) in texts
    assert "max_redirects" in texts
    # AND an example is a code block, lines and all (before: ">>> s = requests . Session ()")
    code = [b.text for b in blocks if b.kind == "code"]
    session = ">>> s = requests.Session()\n>>> s.get('https://httpbin.org/get')"
    assert any(session in c for c in code)
    assert max(len(b.text.split()) for b in blocks if b.kind == "text") < 300


@pytest.mark.slow
def test_the_real_python_tutorial_reads_as_written_around_its_code_and_links() -> None:
    from bench.eval import corpora

    # GIVEN the tutorial's control flow chapter as python3.11-doc ships it
    pages = corpora.pages(corpora.by_name(["python"])[0])
    # WHEN it is parsed
    doc = parse(pages["tutorial/controlflow.html"].read_text(), "html")
    text = "\n".join(b.text for s in doc.sections for b in s.blocks)
    # THEN inline code and links run on into the words and punctuation around them
    assert "The keyword ‘elif’ is short for ‘else if’" in text
    assert "it is convenient to use the enumerate() function, see Looping Techniques." in text
    # AND no paragraph has a word parted from the comma or full stop after it (before: 18 did)
    prose = [b.text for s in doc.sections for b in s.blocks if b.kind == "text"]
    assert [p for p in prose if re.search(r"\w [,.;:](\s|$)", p)] == []


def test_an_html_table_comes_out_as_a_gfm_pipe_table() -> None:
    # GIVEN a table as Sphinx writes one (a header in <thead>), a cell holding a pipe and a short
    # row; and one with no header cells at all
    html = (
        "<main><p>Inside a for-loop block:</p><table><thead><tr><th>Variable</th>"
        "<th>Description</th></tr></thead><tbody><tr><td><code>loop.index</code></td>"
        "<td>The current iteration. (1 indexed)</td></tr><tr><td>a|b</td><td>piped</td></tr>"
        "<tr><td>short</td></tr><tr><td></td><td></td></tr></tbody></table>"
        "<table><tr><td>x</td><td>y</td></tr></table></main>"
    )
    # WHEN it is parsed
    (section,) = parse(html, "html").sections
    # THEN each table is a pipe table markdown renders: its first row the header, then the
    # delimiter row, cells' pipes escaped, short rows padded, empty rows left out
    assert [(b.kind, b.text) for b in section.blocks[1:]] == [
        (
            "table",
            "| Variable | Description |\n| --- | --- |\n"
            "| loop.index | The current iteration. (1 indexed) |\n"
            "| a\\|b | piped |\n| short |  |",
        ),
        ("table", "| x | y |\n| --- | --- |"),
    ]


@pytest.mark.slow
def test_the_real_jinja_loop_variables_table_is_a_table_an_answer_quotes_whole() -> None:
    from bench.eval import corpora
    from docent.generation import ExtractiveAnswerer, Passage
    from docent.sentences import units

    # GIVEN Jinja's template designer page as python-jinja2-doc ships it (Sphinx HTML), whose
    # For section lists the loop variables in a table
    html = corpora.pages(corpora.by_name(["jinja"])[0])["templates.html"].read_text()
    (section,) = [s for s in parse(html, "html").sections if s.headings[-1:] == ("For",)]
    text = "\n\n".join(b.text for b in section.blocks)
    # WHEN the section is split into answer units
    tables = [u for u in units(text) if u.kind == "table"]
    # THEN the variables are one table unit, not sentences cut at each row's full stop
    assert len(tables) == 1 and "| loop.index0 | The current iteration of the loop." in (
        tables[0].text
    )
    # AND asked about, the answer quotes its header and rows as rows, with the citation on a
    # line of its own (on the last row it would be a cell past the header's, never shown)
    passage = Passage("S1", "Template Designer Documentation", "For", text, 5.0)
    excerpt = ExtractiveAnswerer().excerpt(
        "jinja for loop: difference between loop.index and loop.index0?", [passage]
    )
    assert excerpt is not None
    answer = excerpt.text([passage])
    assert answer.startswith("| Variable | Description |\n| --- | --- |\n| loop.index |")
    assert "| loop.index0 | The current iteration of the loop. (0 indexed) |" in answer
    assert "|\n\n[S1]" in answer
