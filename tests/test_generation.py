"""The citation filter and the extractive answerer."""

from __future__ import annotations

import time

import pytest

from docent.generation import (
    ANSWER_COVERAGE,
    LEXICAL_COVERAGE,
    LEXICAL_SCORE,
    NOT_FOUND,
    AnswerRequest,
    CitationFilter,
    ExtractiveAnswerer,
    LinkFilter,
    Passage,
    Usage,
    answers,
    proper_names,
    unmentioned_names,
)


def run_filter(deltas: list[str], valid: list[str]) -> tuple[str, list[str]]:
    citations = CitationFilter(valid)
    text = "".join(citations.feed(d) for d in deltas) + citations.flush()
    return text, citations.cited


def test_valid_markers_pass_and_invented_ones_vanish() -> None:
    text, cited = run_filter(["Use pip [S1]. Or conda [S7].", " See [S2]."], ["S1", "S2"])
    assert text == "Use pip [S1]. Or conda . See [S2]."
    assert cited == ["S1", "S2"]


@pytest.mark.parametrize("cut", range(1, 12))
def test_a_marker_split_across_deltas_is_held_until_complete(cut: int) -> None:
    whole = "Answer [S12] and [S3] end."
    text, cited = run_filter([whole[:cut], whole[cut:]], ["S3"])
    assert text == "Answer  and [S3] end."
    assert cited == ["S3"]


def test_lists_of_ids_are_normalised() -> None:
    text, cited = run_filter(["Both [S2, S1] and [S1; S9]."], ["S1", "S2"])
    assert text == "Both [S2][S1] and [S1]."
    assert cited == ["S2", "S1"]


def test_a_bracket_that_is_no_marker_is_not_held_forever() -> None:
    text, _ = run_filter(["array[", "0] = 1"], ["S1"])
    assert text == "array[0] = 1"


PASSAGES = [
    Passage(
        "S1",
        "Install",
        "Install with pip",
        "Install the package with pip:\n\n```bash\npip install acme\n```\n\n"
        "Then run `acme serve` to start it.",
        3.0,
    ),
    Passage(
        "S2",
        "Limits",
        "Sliding window",
        "Every token gets sixty requests per minute. Requests over the limit get a 429 status.",
        2.0,
    ),
]


async def answer(question: str, passages: list[Passage]) -> tuple[str, Usage]:
    usage = Usage()
    parts = [
        p
        async for p in ExtractiveAnswerer().stream(
            AnswerRequest(question, [], passages, usage, time.monotonic() + 5)
        )
    ]
    return "".join(parts), usage


async def test_extractive_answer_cites_the_sentences_it_uses() -> None:
    text, usage = await answer("What status do requests over the limit get?", PASSAGES)
    assert "Requests over the limit get a 429 status. [S2]" in text
    assert "[S1]" not in text
    assert usage.completion_tokens > 0 and usage.prompt_tokens > 0


async def test_code_blocks_are_quoted_whole() -> None:
    text, _ = await answer("How do I install with pip?", PASSAGES)
    assert "```bash\npip install acme\n```" in text
    assert text.rstrip().endswith("[S1]")


async def test_nothing_relevant_means_not_found_and_no_citation() -> None:
    text, _ = await answer("Who painted the Mona Lisa?", PASSAGES)
    assert text == NOT_FOUND
    text, _ = await answer("What is it?", PASSAGES)  # only stopwords
    assert text == NOT_FOUND


def run_links(deltas: list[str], urls: list[str | None]) -> str:
    links = LinkFilter(urls)
    return "".join(links.feed(d) for d in deltas) + links.flush()


def test_images_never_pass_and_unknown_hosts_lose_their_links() -> None:
    urls = ["https://docs.acme.test/install#pip", None]
    text = run_links(
        [
            "See [the guide](https://docs.acme.test/limits) and ![x](https://evil.test/p.png?q=s",
            "ecret) or [click](https://evil.test/a). Visit https://evil.test/b now, ",
            "or <https://docs.acme.test/x>. [rel](/relative) [js](javascript:alert(1))",
        ],
        urls,
    )
    assert text == (
        "See [the guide](https://docs.acme.test/limits) and x or click. "
        "Visit [link removed] now, or <https://docs.acme.test/x>. [rel](/relative) js)"
    )
    assert "evil" not in text


@pytest.mark.parametrize("cut", range(1, 60, 3))
def test_links_split_across_deltas_are_judged_whole(cut: int) -> None:
    whole = "Go to [docs](https://docs.acme.test/a) not ![i](https://evil.test/i.png) end."
    assert run_links([whole[:cut], whole[cut:]], ["https://docs.acme.test/"]) == (
        "Go to [docs](https://docs.acme.test/a) not i end."
    )


# Real passages, as Docent parses their pages: Python's tutorial (4.8.1) and Django REST
# framework's throttling guide.
DEFAULTS = Passage(
    "S1",
    "4. More Control Flow Tools",
    "4.8.1. Default Argument Values",
    "The default values are evaluated at the point of function definition in the defining "
    "scope, so that\n\n```\ni = 5\n\ndef f(arg=i):\n    print(arg)\n\ni = 6\nf()\n```\n\n"
    "will print 5 .\n\nImportant warning: The default value is evaluated only once. This makes "
    "a difference when the default is a mutable object such as a list, dictionary, or instances "
    "of most classes. For example, the following function accumulates the arguments passed to "
    "it on subsequent calls:\n\n```\ndef f(a, L=[]):\n    L.append(a)\n    return L\n\n"
    "print(f(1))\nprint(f(2))\nprint(f(3))\n```\n\nThis will print\n\n```\n[1]\n[1, 2]\n"
    "[1, 2, 3]\n```",
    9.0,
)
THROTTLING = Passage(
    "S2",
    "Throttling - Django REST framework",
    "Setting the throttling policy",
    "The default throttling policy may be set globally, using the DEFAULT_THROTTLE_CLASSES and "
    "DEFAULT_THROTTLE_RATES settings. For example.\n\n```\nREST_FRAMEWORK = {\n"
    "    'DEFAULT_THROTTLE_CLASSES': [\n        'rest_framework.throttling.AnonRateThrottle',\n"
    "        'rest_framework.throttling.UserRateThrottle'\n    ],\n"
    "    'DEFAULT_THROTTLE_RATES': {\n        'anon': '100/day',\n        'user': '1000/day'\n"
    "    }\n}\n```\n\nThe rate descriptions used in DEFAULT_THROTTLE_RATES may include second , "
    "minute , hour or day as the throttle period.\n\nYou can also set the throttling policy on "
    "a per-view or per-viewset basis, using the APIView class-based views.",
    7.0,
)


async def test_the_best_section_is_quoted_in_whole_sentences_in_reading_order() -> None:
    from bench.eval.score import unfaithful_pieces

    text, _ = await answer(
        "Why is a mutable default argument value shared between calls?", [DEFAULTS, THROTTLING]
    )
    # The run starts at the sentence that answers, reads on, and brings the code it introduces.
    assert text.startswith(
        "Important warning: The default value is evaluated only once. This makes a difference"
    )
    assert "arguments passed to it on subsequent calls:\n\n```\ndef f(a, L=[]):" in text
    assert "print(f(3))\n```\n\n[S1]" in text
    assert "[S2]" not in text and "will print 5" not in text
    assert unfaithful_pieces(text, {"S1": DEFAULTS.text}) == []


async def test_a_code_block_holding_the_asked_setting_is_quoted_whole() -> None:
    text, _ = await answer("Where do I set DEFAULT_THROTTLE_RATES?", [DEFAULTS, THROTTLING])
    block = THROTTLING.text[THROTTLING.text.index("```") : THROTTLING.text.index("```\n\n") + 3]
    assert block in text
    assert text.startswith("The default throttling policy may be set globally")
    assert text.count("[S2]") == 1 and "[S1]" not in text


async def test_a_sentence_found_in_two_sources_is_quoted_once() -> None:
    copy = Passage("S3", "Throttling", "Copy", THROTTLING.text, 6.9)
    text, _ = await answer(
        "What periods can the rate descriptions in DEFAULT_THROTTLE_RATES use?", [THROTTLING, copy]
    )
    assert text.count("The rate descriptions used in DEFAULT_THROTTLE_RATES") == 1


async def test_markdown_and_links_to_the_sources_own_site_survive_the_answer() -> None:
    guide = Passage(
        "S1",
        "Throttling",
        "API reference",
        "The **ScopedRateThrottle** class restricts access to parts of the API, see the "
        "[settings guide](https://www.django-rest-framework.org/api-guide/settings/). "
        "It applies only to views with a `throttle_scope`.",
        5.0,
    )
    text, _ = await answer("What does ScopedRateThrottle restrict?", [guide])
    assert "The **ScopedRateThrottle** class restricts access" in text
    links = LinkFilter(
        ["https://www.django-rest-framework.org/api-guide/throttling/#api-reference"]
    )
    shown = links.feed(text) + links.flush()
    assert "[settings guide](https://www.django-rest-framework.org/api-guide/settings/)" in shown
    assert "link removed" not in shown


async def test_a_question_the_passages_do_not_cover_is_not_answered() -> None:
    text, _ = await answer(
        "How do I deploy to Kubernetes with a Helm chart?", [DEFAULTS, THROTTLING]
    )
    assert text == NOT_FOUND


async def test_a_section_titled_with_the_asked_name_is_quoted_from_its_opening() -> None:
    # Django REST framework's validators guide, as Docent parses it.
    section = Passage(
        "S1",
        "Validators - Django REST framework",
        "UniqueTogetherValidator",
        "This validator can be used to enforce unique_together constraints on model instances. "
        "It has two required arguments, and a single optional messages argument:\n\n"
        "- queryset required - This is the queryset against which uniqueness should be "
        "enforced.\n- fields required - A list or tuple of field names which should make a "
        "unique set. These must exist as fields on the serializer class.\n- message - The error "
        "message that should be used when validation fails.\n\n"
        "The validator should be applied to serializer classes, like so:",
        8.0,
    )
    text, _ = await answer("What is UniqueTogetherValidator for?", [section, THROTTLING])
    # The opening defines it; the list it introduces comes whole, each item on its line.
    assert text.startswith("This validator can be used to enforce unique_together constraints")
    assert "\n\n- queryset required" in text and "\n\n- fields required" in text
    assert text.endswith(
        "- message - The error message that should be used when validation fails. [S1]"
    )


async def test_a_bulleted_item_is_quoted_with_the_sentence_after_its_list() -> None:
    # GIVEN a section whose bulleted list's second item holds the asked name
    section = Passage(
        "S1",
        "Permissions",
        "API reference",
        "Any permission class may override the following methods:\n\n"
        "- .has_permission(self, request, view)\n"
        "- .has_object_permission(self, request, view, obj)\n\n"
        "The methods should return True if the request should be granted access, and False "
        "otherwise.",
        9.0,
    )
    # WHEN the question asks about that item
    text, _ = await answer("What does has_object_permission return?", [section])
    # THEN the answer starts at that item (the items are independent: the first one's words do
    # not add up with it) and reads on to the sentence after the list, which says what it returns
    assert text.startswith("- .has_object_permission(self, request, view, obj)\n\n")
    assert "The methods should return True" in text and ".has_permission(" not in text


# Django REST framework's throttling guide, as Docent parses it: a section that uses the
# question's words, ranked above the one whose heading names the subject.
USER_RATE = Passage(
    "S1",
    "Throttling - Django REST framework",
    "UserRateThrottle",
    "The UserRateThrottle will throttle users to a given rate of requests across the API. The "
    "user id is used to generate a unique key to throttle against. Unauthenticated requests "
    "will fall back to using the IP address of the incoming request to generate a unique key to "
    "throttle against.\n\nThe allowed request rate is determined from one of the following (in "
    "order of preference).\n\n- The rate property on the class, which may be provided by "
    "overriding UserRateThrottle and setting the property.\n- The DEFAULT_THROTTLE_RATES['user'] "
    "setting.\n\nAn API may have multiple UserRateThrottles in place at the same time.",
    7.5,
)


async def test_the_section_whose_heading_names_the_subject_is_quoted() -> None:
    text, _ = await answer("How do I set the default throttle rates?", [USER_RATE, THROTTLING])
    assert text.startswith("The default throttling policy may be set globally")
    assert "'DEFAULT_THROTTLE_RATES': {" in text and "[S1]" not in text


async def test_a_pages_opening_section_earns_no_heading_bonus_over_its_sections() -> None:
    """The opening section is headed with the page's title: that names the page, not where in
    it the question is answered (the tests' install page: its pip section answers)."""
    title = "Installing Acme"
    pip = Passage(
        "S1", title, "Install with pip",
        "Install the package from PyPI with pip:\n\n```bash\npip install acme-server\n```\n\n"
        "Then start the server with `acme serve`. The server listens on port 8080 by default.",
        6.0,
    )  # fmt: skip
    needs = Passage(
        "S2", title, "Requirements",
        "Acme needs Python 3.11 or newer and about 200 MB of disk space.", 5.0,
    )  # fmt: skip
    opening = Passage(
        "S3",
        title,
        title,
        "Acme runs on Linux and macOS. This page explains how to install it.",
        4.0,
    )
    text, _ = await answer("How do I install Acme?", [pip, needs, opening])
    assert "pip install acme-server" in text and "[S1]" in text


# Django REST framework's permissions guide, "Custom permissions", as Docent parses it.
CUSTOM_PERMISSIONS = Passage(
    "S1",
    "Permissions - Django REST framework",
    "Custom permissions",
    "To implement a custom permission, override BasePermission and implement either, or both, of "
    "the following methods:\n\n- .has_permission(self, request, view)\n"
    "- .has_object_permission(self, request, view, obj)\n\n"
    "The methods should return True if the request should be granted access, and False "
    "otherwise.\n\nIf you need to test if a request is a read operation or a write operation, "
    "you should check the request method against the constant SAFE_METHODS , which is a tuple "
    "containing 'GET' , 'OPTIONS' and 'HEAD' . For example:\n\n```\n"
    "if request.method in permissions.SAFE_METHODS:\n    # Check permissions for read-only "
    "request\nelse:\n    # Check permissions for write request\n```",
    9.0,
)


async def test_the_verb_of_a_how_do_i_question_does_not_pick_the_sentence() -> None:
    # GIVEN a section whose heading names the subject, and a later sentence that shares only
    # the question's verb ("write" operation)
    # WHEN the question asks how to "write" one
    text, _ = await answer("How do I write a custom permission class?", [CUSTOM_PERMISSIONS])
    # THEN the sentence that says how (override BasePermission) is quoted, not the one on writes
    assert text.startswith("To implement a custom permission, override BasePermission")
    assert "SAFE_METHODS" not in text
    # AND the verb still counts as evidence: the same question is answered
    assert text != NOT_FOUND


async def test_the_example_right_after_the_quoted_sentence_comes_with_it() -> None:
    # GIVEN Django REST framework's URLPathVersioning section: a sentence, then its example
    section = Passage(
        "S1",
        "Versioning - Django REST framework",
        "URLPathVersioning",
        "This scheme requires the client to specify the version as part of the URL path.\n\n"
        "```\nGET /v1/bookings/ HTTP/1.1\nHost: example.com\nAccept: application/json\n```\n\n"
        "Your URL conf must include a pattern that matches the version with a 'version' keyword "
        "argument, so that this information is available to the versioning scheme.",
        8.0,
    )
    # WHEN the question names the scheme
    text, _ = await answer("How do I version my API with URLPathVersioning?", [section])
    # THEN the sentence is quoted with the request it illustrates, though no colon introduces it
    assert text.startswith(
        "This scheme requires the client to specify the version as part of the URL path.\n\n"
        "```\nGET /v1/bookings/ HTTP/1.1\nHost: example.com\nAccept: application/json\n```"
    )


URL_CONF = (
    "```\nurlpatterns = [\n    re_path(\n        r'^(?P<version>(v1|v2))/bookings/$',\n"
    "        bookings_list,\n        name='bookings-list'\n    ),\n]\n```"
)


def _versioning(after_example: str) -> Passage:
    return Passage(
        "S1",
        "Versioning - Django REST framework",
        "URLPathVersioning",
        "This scheme requires the client to specify the version as part of the URL path.\n\n"
        "```\nGET /v1/bookings/ HTTP/1.1\nHost: example.com\n```\n\n" + after_example,
        8.0,
    )


async def test_no_quote_opens_with_a_version_note_or_a_see_also_label() -> None:
    # GIVEN Flask's section on flashing with categories, which opens with its version note, and
    # one that opens with a cross-reference
    for opening in ("New in version 0.3.", "**See also:** Message Flashing"):
        section = Passage(
            "S1",
            "Message Flashing",
            "Flashing With Categories",
            f"{opening}\n\nIt is also possible to provide categories when flashing a message. "
            "The default category if nothing is provided is 'message'.",
            8.0,
        )
        text, _ = await answer("How do I flash messages with categories?", [section])
        # THEN the quote starts with the sentence that says something
        assert text.startswith("It is also possible to provide categories"), opening


async def test_a_section_opens_after_its_version_note() -> None:
    # GIVEN Requests' SOCKS section: its heading names the subject, its version note comes first,
    # and its first sentence holds none of the question's words
    section = Passage(
        "S1",
        "Advanced Usage",
        "SOCKS proxies",
        "New in version 2.10.0.\n\nThis optional feature needs a third-party library installed "
        "first. You can get it from pip:\n\n```\n$ python -m pip install requests[socks]\n```",
        5.0,
    )
    text, _ = await answer("How do I use SOCKS proxies?", [section])
    # THEN the sentence after the note opens the section as a first sentence would: quoted, with
    # the block it introduces
    assert text.startswith("This optional feature needs a third-party library installed first.")
    assert "pip install requests[socks]" in text


async def test_a_short_quote_reads_on_past_its_example_to_the_how_and_its_block() -> None:
    # GIVEN the URLPathVersioning section as Django REST framework writes it: what the scheme
    # is, a request, then what the URL conf must hold and the URL conf itself
    section = _versioning(
        "Your URL conf must include a pattern that matches the version with a 'version' keyword "
        f"argument, so that this information is available to the versioning scheme.\n\n{URL_CONF}"
        "\n\nThe scheme is then set in the DEFAULT_VERSIONING_CLASS setting."
    )
    text, _ = await answer("How do I version my API with URLPathVersioning?", [section])
    # THEN the answer reads on past the request to the sentence that says how, with its block,
    # and stops after that block
    assert "```\n\nYour URL conf must include a pattern" in text
    assert text.endswith(f"{URL_CONF}\n\n[S1]")


async def test_reading_on_past_an_example_stops_at_a_label_or_a_version_note() -> None:
    # GIVEN what follows the example is the next example's label, or a version note
    for after in ("Example: NamespaceVersioning", "New in version 3.1."):
        section = _versioning(f"{after}\n\nThe client sends the version in a header.")
        text, _ = await answer("How do I version my API with URLPathVersioning?", [section])
        # THEN the answer ends with the example
        assert text.endswith("Host: example.com\n```\n\n[S1]"), after


@pytest.mark.slow
async def test_a_literal_written_in_the_question_picks_the_sentence_that_holds_it() -> None:
    from bench.eval import corpora
    from docent.parsing import parse

    # GIVEN the regex HOWTO's section on named groups, as python3.11-doc ships it: the syntax
    # `(?P<name>...)` (the text of its code span) in its tenth paragraph, after an opening on
    # groups and Perl's extensions
    pages = corpora.pages(corpora.by_name(["python"])[0])
    doc = parse(pages["howto/regex.html"].read_text(), "html")
    (section,) = [s for s in doc.sections if s.headings[-1] == "Non-capturing and Named Groups"]
    passage = Passage(
        "S1", doc.title, section.headings[-1], "\n\n".join(b.text for b in section.blocks), 9.0
    )
    # WHEN the question writes the syntax out
    text, _ = await answer(
        "How do I write a named group (?P<name>...) in a regular expression?", [passage]
    )
    # THEN the sentence that holds it is quoted (it was held for raw HTML, "<name>", before)
    # (its code span runs on into the full stop after it, as on the page)
    assert text.startswith(
        "The syntax for a named group is one of the Python-specific extensions: (?P<name>...)."
    )


def test_the_names_a_question_asks_about_are_its_capitalised_words_and_acronyms() -> None:
    assert proper_names("How do I add a GraphQL endpoint to a Flask app?") == ["GraphQL", "Flask"]
    # A sentence's first word is capitalised by grammar; a one-letter word names nothing.
    assert proper_names("Does it parse YAML? Then what of Kafka?") == ["YAML", "Kafka"]
    # A sentence that does not ask sets the scene: what it names is not what is asked about
    assert proper_names("On our Ubuntu box it is slow. How do I speed it up?") == []
    assert proper_names("Our readers are in France. Can the labels be in French?") == ["French"]
    assert proper_names("Does it parse YAML? I use Kafka.") == ["YAML"]
    assert proper_names("I want a callout box, like reStructuredText has.") == ["reStructuredText"]
    assert proper_names("How do I write a custom permission class?") == []
    # A question typed in capitals names nothing by its case
    assert proper_names("HOW DO I INSTALL ACME WITH PIP, PLEASE?") == []
    # A name is held as a whole word, in any case: "overwhelm" does not hold Helm
    texts = ["Do not overwhelm the server.", "The helm_chart setting; see YAML-based configs."]
    assert unmentioned_names("Can Helm install it with YAML?", texts) == ["Helm"]


async def test_a_name_the_docs_never_mention_leaves_the_question_unanswered() -> None:
    # GIVEN the throttling section, which covers most words of a question about another product
    question = "How do I set the default throttle rates in Kong?"
    excerpt = ExtractiveAnswerer().excerpt(question, [THROTTLING])
    assert excerpt is not None and excerpt.coverage >= ANSWER_COVERAGE
    assert unmentioned_names(question, [THROTTLING.text, THROTTLING.title]) == ["Kong"]
    # WHEN retrieval found the docs never name it
    request = AnswerRequest(question, [], [THROTTLING], Usage(), time.monotonic() + 5, ("Kong",))
    text = "".join([p async for p in ExtractiveAnswerer().stream(request)])
    # THEN the question is not answered
    assert text == NOT_FOUND
    # AND the same question without the name is
    text, _ = await answer("How do I set the default throttle rates?", [THROTTLING])
    assert text.startswith("The default throttling policy may be set globally")


def test_answered_by_coverage_or_by_coverage_and_strong_bm25_evidence() -> None:
    # Coverage alone decides at ANSWER_COVERAGE, whatever the BM25 score
    assert answers(ANSWER_COVERAGE) and answers(ANSWER_COVERAGE, 0.0)
    assert not answers(ANSWER_COVERAGE - 0.01)
    # Below it, a question is answered only with both the lower coverage and a strong score
    assert answers(LEXICAL_COVERAGE, LEXICAL_SCORE)
    assert not answers(LEXICAL_COVERAGE, LEXICAL_SCORE - 0.1)
    assert not answers(LEXICAL_COVERAGE - 0.01, 10 * LEXICAL_SCORE)


async def test_a_long_question_its_section_matches_strongly_is_answered() -> None:
    # GIVEN a question with a sentence of context whose words the section does not use, so the
    # section covers less of it than ANSWER_COVERAGE asks
    question = (
        "A scraper floods our staging box every weekend and slows everything. How do I set "
        "default throttle rates?"
    )
    excerpt = ExtractiveAnswerer().excerpt(question, [THROTTLING])
    assert excerpt is not None and LEXICAL_COVERAGE <= excerpt.coverage < ANSWER_COVERAGE

    async def reply(lexical_score: float) -> str:
        request = AnswerRequest(
            question, [], [THROTTLING], Usage(), time.monotonic() + 5, (), lexical_score
        )
        return "".join([p async for p in ExtractiveAnswerer().stream(request)])

    # WHEN retrieval's best section matched it strongly under BM25, THEN it is answered
    assert (await reply(LEXICAL_SCORE)).startswith("The default throttling policy may be set")
    # AND with weak lexical evidence (or none known) it is not
    assert await reply(LEXICAL_SCORE / 2) == NOT_FOUND
    assert await reply(0.0) == NOT_FOUND


async def test_a_word_no_passage_holds_loses_most_of_its_weight() -> None:
    # GIVEN a paraphrase in the asker's own words ("gadget", "choking", "roughly") around the
    # docs' terms
    question = (
        "My little gadget keeps choking: roughly how many requests per minute is each token "
        "allowed?"
    )
    excerpt = ExtractiveAnswerer().excerpt(question, PASSAGES)
    # THEN the words no passage holds count little more than the commonest, not as the rarest
    # terms (which left 0.29 of the question covered): the sentence holding the rest answers it
    assert excerpt is not None and excerpt.coverage >= ANSWER_COVERAGE
    text, _ = await answer(question, PASSAGES)
    assert text.startswith("Every token gets sixty requests per minute.")


def _options_list(marker: str) -> Passage:
    items = [
        "marker: Text to find and replace with the table of contents. Defaults to [TOC].",
        "title: Title to insert in the table of contents. Defaults to None.",
        "anchorlink: Set to True to cause all headers to link to themselves.",
        "permalink: Set to True to generate permanent links at the end of each header.",
        "baselevel: Base level for headers. Defaults to 1. Raise it to shift every heading "
        "level down, so that a top heading is written as h3.",
    ]
    listed = "\n".join(
        f"{marker if marker != '1.' else f'{n}.'} {item}" for n, item in enumerate(items, 1)
    )
    text = f"The following options are provided to configure the output:\n\n{listed}"
    return Passage("S1", "Table of Contents", "Usage", text, 5.0)


QUESTION_DEEP_IN_A_LIST = "Which option shifts heading levels so that a top heading becomes h3?"


def quoted(question: str, passages: list[Passage]) -> str:
    excerpt = ExtractiveAnswerer().excerpt(question, passages)
    assert excerpt is not None
    return excerpt.text(passages)


def test_a_bulleted_list_is_quoted_from_the_item_that_answers() -> None:
    # GIVEN an extension's options as a bulleted list, the one asked about fifth
    # WHEN it is asked about, THEN the quote starts at that option, not at the list's first
    text = quoted(QUESTION_DEEP_IN_A_LIST, [_options_list("-")])
    assert text.startswith("- baselevel: Base level for headers.")
    assert "marker:" not in text and text.endswith("[S1]")


def test_a_bulleted_quote_is_chosen_on_its_own_item_not_its_neighbours_words() -> None:
    # GIVEN tips as a bulleted list (as in Python's sorting HOWTO), the first sharing two of the
    # question's words ("sorting", "comparison") that the one that answers does not hold
    tips = [
        "For locale aware sorting, use locale.strxfrm() for a key function or locale.strcoll() "
        "for a comparison function.",
        "The reverse parameter still maintains sort stability (so that records with equal keys "
        "retain the original order).",
        "The sort routines use < when making comparisons between two objects.",
    ]
    text = "Odds and ends:\n\n" + "\n".join(f"- {tip}" for tip in tips)
    passage = Passage("S1", "Sorting Techniques", "Odds and Ends", text, 5.0)
    question = "If two records compare equal, does sorting keep them in their original order?"
    # WHEN asked, THEN the quote starts at the item that answers: the items are independent, so
    # a run across two of them does not win on their words added up
    assert quoted(question, [passage]).startswith("- The reverse parameter still maintains")


def test_a_numbered_list_is_read_from_its_first_step() -> None:
    # GIVEN the same items as numbered steps, THEN the quote reads the list from its start
    text = quoted(QUESTION_DEEP_IN_A_LIST, [_options_list("1.")])
    assert text.startswith("The following options are provided to configure the output:")
    assert "1. marker:" in text


def test_a_quote_from_mid_list_leaves_answered_as_it_was() -> None:
    # Coverage (what `answered` reads) counts only runs read from a list's start: the bulleted
    # list and the numbered one cover the question alike
    passages = [_options_list("-")], [_options_list("1.")]
    bulleted, numbered = (
        ExtractiveAnswerer().excerpt(QUESTION_DEEP_IN_A_LIST, p) for p in passages
    )
    assert bulleted is not None and numbered is not None
    assert bulleted.coverage == numbered.coverage < ANSWER_COVERAGE


def _settings_table(rows: list[tuple[str, str]]) -> str:
    lines = ["| Setting | Meaning |", "| --- | --- |"]
    return "\n".join(lines + [f"| {name} | {meaning} |" for name, meaning in rows])


def test_a_long_table_is_quoted_by_its_header_and_the_rows_that_answer() -> None:
    # GIVEN a reference table of thirty settings, far over the answer's word budget, one of them
    # the asked one
    rows = [(f"OPTION_{n}", f"Sets the number {n} of things the server keeps.") for n in range(30)]
    rows[17] = ("MAX_CONTENT_LENGTH", "The largest request body, in bytes, the app accepts.")
    table = _settings_table(rows)
    passage = Passage("S1", "Configuration", "Builtin settings", table, 5.0)
    # WHEN asked about it
    text = quoted("What is the largest request body the app accepts?", [passage])
    # THEN the quote is the header, the delimiter and that row, each as in the source
    assert text == (
        "| Setting | Meaning |\n| --- | --- |\n"
        "| MAX_CONTENT_LENGTH | The largest request body, in bytes, the app accepts. |\n\n[S1]"
    )


def test_a_tables_rows_do_not_add_up_their_words() -> None:
    # GIVEN a table whose two rows each hold one of the asked words, and a sentence in another
    # section that holds both
    table = _settings_table(
        [("timeout", "Seconds to wait for the server."), ("retries", "Attempts on a failure.")]
    )
    passages = [
        Passage("S1", "Settings", "Client settings", table, 5.0),
        Passage(
            "S2", "Client", "Behaviour", "Retries wait for the timeout before each attempt.", 4.0
        ),
    ]
    # WHEN asked about both, THEN the sentence is quoted: the rows are independent settings,
    # and no one of them answers about the two together
    text = quoted("How do retries and the timeout work together?", passages)
    assert text.startswith("Retries wait for the timeout before each attempt.")


def test_a_table_counts_whole_as_evidence_for_answered() -> None:
    # GIVEN SmartyPants' table of substitutions (modelled on Python-Markdown's page): quotes,
    # dashes and the ellipsis each in a row of their own
    table = "\n".join(
        [
            "| ASCII symbol | Replacement | Substitution key |",
            "| --- | --- | --- |",
            "| ' | curly single quotes | left-single-quote |",
            "| -- | en dash | ndash |",
            "| ... | ellipsis character | ellipsis |",
        ]
    )
    text = f"The extension converts ASCII symbols to typographic ones:\n\n{table}"
    passage = Passage("S1", "SmartyPants", "Summary", text, 5.0)
    # WHEN a question asks about all three
    excerpt = ExtractiveAnswerer().excerpt(
        "How do I get curly quotes, dashes and ellipsis characters?", [passage]
    )
    # THEN the rows' words add up as evidence: the table answers the three together
    assert excerpt is not None and excerpt.coverage >= ANSWER_COVERAGE


def test_rows_a_chunk_boundary_cut_from_their_header_are_still_quoted() -> None:
    # GIVEN the second chunk of a long methods table (guizero's Waffle): its rows, whole, without
    # the header and delimiter rows the first chunk kept
    rows = "\n".join(
        [
            "| set_all(color) | color (color) | - | Sets all pixels to the specified colour. |",
            "| set_pixel(x, y, color) | x (int), y (int), color (color) | - | Sets the pixel at "
            "the specified coordinates to the specified colour. |",
        ]
    )
    passage = Passage("S1", "Waffle", "Methods", rows, 5.0)
    # WHEN asked, THEN the row that answers is quoted as it stands in the source
    text = quoted("Which method sets the pixel at given coordinates?", [passage])
    assert "| set_pixel(x, y, color) |" in text and text.endswith("|\n\n[S1]")


def test_a_long_tables_rows_are_chosen_by_how_much_of_the_question_they_hold() -> None:
    # GIVEN a widget's parameters (modelled on guizero's PushButton page): thirty rows that
    # each name the button, and far down, the one on its width
    rows = [(f"option_{n}", f"Sets option {n} of the button.") for n in range(30)]
    rows[25] = ("width", "Set the width of the button in characters, or pixels for an image.")
    passage = Passage("S1", "PushButton", "Parameters", _settings_table(rows), 5.0)
    # WHEN asked about the width, THEN the width row is quoted, under the header, though every
    # row before it holds a word of the question too
    text = quoted("Is a button's width measured in characters or pixels?", [passage])
    assert text.startswith("| Setting | Meaning |\n| --- | --- |\n")
    assert "| width | Set the width of the button in characters" in text
