"""Passages into answer units: real documentation text, split where a reader would split it."""

from __future__ import annotations

from docent.sentences import blocks, split_sentences, units

# From Python's tutorial (4.8.1, Default Argument Values), as Docent parses the HTML page.
DEFAULTS = """Important warning: The default value is evaluated only once. This makes a difference \
when the default is a mutable object such as a list, dictionary, or instances of most classes. \
For example, the following function accumulates the arguments passed to it on subsequent calls:

```
def f(a, L=[]):
    L.append(a)
    return L

print(f(1))
```

This function can be called in several ways:

- giving only the mandatory argument: ask_ok('Do you really want to quit?')
- giving one of the optional arguments: ask_ok('OK to overwrite the file?', 2)"""


def test_sentences_end_where_a_reader_ends_them() -> None:
    text = (
        "Using with is shorter than equivalent try-finally blocks, e.g. in a loop. "
        "Use `request.user.is_authenticated` for that. Call f.close() when done! "
        "Is 3.14 a float? Yes (see J. Smith)."
    )
    assert split_sentences(text) == [
        "Using with is shorter than equivalent try-finally blocks, e.g. in a loop.",
        "Use `request.user.is_authenticated` for that.",
        "Call f.close() when done!",
        "Is 3.14 a float?",
        "Yes (see J. Smith).",
    ]


def test_code_blocks_stay_whole_across_blank_lines_and_lists_keep_their_items() -> None:
    kinds = [kind for _, kind in blocks(DEFAULTS)]
    assert kinds == ["text", "code", "text", "list"]
    code = blocks(DEFAULTS)[1][0]
    assert code.startswith("```\ndef f(a, L=[]):") and code.endswith("print(f(1))\n```")
    found = units(DEFAULTS)
    assert [u.kind for u in found] == ["sentence"] * 3 + ["code", "sentence", "item", "item"]
    assert found[0].text == "Important warning: The default value is evaluated only once."
    assert found[-1].text.startswith("- giving one of the optional arguments")


def test_pieces_cut_by_a_chunk_boundary_are_fragments() -> None:
    cut = "value is evaluated only once. This makes a difference when the default is a"
    found = units(cut)
    assert [u.fragment for u in found] == [True, True]
    whole = units("The default value is evaluated only once.\n\n…\n\nA new paragraph starts here.")
    assert [(u.text, u.fragment) for u in whole] == [
        ("The default value is evaluated only once.", False),
        ("A new paragraph starts here.", False),
    ]


def test_raw_html_diagrams_and_unclosed_fences_are_never_quoted() -> None:
    text = (
        'Run it: <span class="term">$ uvicorn main:app</span> now.\n\n'
        "```mermaid\ngraph LR\n  a --> b\n```\n\n"
        "Use `<b>` tags in templates.\n\n"
        "```python\nprint('cut off"
    )
    found = units(text)
    assert [(u.kind, u.fragment) for u in found] == [
        ("sentence", True),
        ("code", True),
        ("sentence", False),
        ("code", True),
    ]


def test_a_placeholder_in_angle_brackets_is_syntax_not_html() -> None:
    # Python's regex HOWTO and Django's URL patterns, as flattened from their code spans
    text = (
        "The syntax for a named group is one of the Python-specific extensions: (?P<name>...) . "
        "Capture the id with <int:pk> in the path. Close it with </b> here."
    )
    found = units(text)
    assert [u.fragment for u in found] == [False, False, True]


def test_a_table_with_or_without_outer_pipes_is_one_block_and_a_setext_heading_is_not() -> None:
    # GIVEN a pipe table, one written without outer pipes (GFM allows it), and a setext heading
    piped = "| a | b |\n| --- | --- |\n| 1. One. | 2. Two. |"
    bare = "a | b\n--- | ---\n1. One. | 2. Two."
    heading = "Install | Setup\n---"
    # THEN both tables are table blocks, whole; the heading is not a table
    assert blocks(piped) == [(piped, "table")]
    assert blocks(bare) == [(bare, "table")]
    assert blocks(heading)[0][1] != "table"
