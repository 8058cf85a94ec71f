"""POST /chat through real HTTP: the SSE contract, JSON mode, sources and citations."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx

from docent.errors import UpstreamError
from docent.generation import AnswerRequest, Message, Usage
from docent.services import Services
from tests.conftest import Docent, parse_sse, running_docent


def ask(docent: Docent, question: str, **body: object) -> httpx.Response:
    with docent.client() as client:
        return client.post("/chat", json={"question": question, **body})


def test_stream_sends_sources_then_chunks_then_done(docent_with_corpus: Docent) -> None:
    response = ask(docent_with_corpus, "How do I install Acme with pip?")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    events = parse_sse(response.text)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sources"
    assert kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"chunk"} and len(kinds) > 3
    done = events[-1]
    assert done["answered"] is True
    assert done["request_id"] == response.headers["x-request-id"]
    assert done["model"] == "extractive"
    assert set(done["usage"]) == {"prompt_tokens", "completion_tokens", "embedding_tokens"}
    assert done["usage"]["completion_tokens"] > 0


def test_citations_name_real_sources_and_point_at_the_right_document(
    docent_with_corpus: Docent,
) -> None:
    events = parse_sse(ask(docent_with_corpus, "How do I install Acme with pip?").text)
    sources = {s["id"]: s for s in events[0]["sources"]}
    text = "".join(e["content"] for e in events if e["type"] == "chunk")
    done = events[-1]

    assert done["citations"], text
    for cited in done["citations"]:
        assert cited in sources
        assert f"[{cited}]" in text
    assert set(re.findall(r"\[(S\d+)\]", text)) == set(done["citations"])
    first = sources[done["citations"][0]]
    assert first["document_id"] == "install.md"
    assert "pip install acme-server" in text


def test_sources_deep_link_to_the_section_heading(docent_with_corpus: Docent) -> None:
    events = parse_sse(ask(docent_with_corpus, "What happens when I exceed the rate limit?").text)
    source = events[0]["sources"][0]

    assert source["document_id"] == "limits.md"
    assert source["heading"] == "Sliding window"
    assert source["url"] == "https://docs.acme.test/limits#sliding-window"
    assert source["title"] == "Rate limits"
    assert "429" in source["snippet"]
    assert set(source) == {"id", "document_id", "title", "url", "heading", "score", "snippet"}


def test_unanswerable_question_says_so_and_cites_nothing(docent_with_corpus: Docent) -> None:
    events = parse_sse(ask(docent_with_corpus, "Which hyperparameters train the quantum cat?").text)
    done = events[-1]
    text = "".join(e["content"] for e in events if e["type"] == "chunk")

    assert done["answered"] is False
    assert done["citations"] == []
    assert "couldn't find" in text
    assert "[S" not in text


def test_a_question_about_something_the_docs_never_name_is_not_answered(
    docent_with_corpus: Docent,
) -> None:
    # GIVEN docs that explain installing with pip and never mention Kubernetes
    # WHEN a question covered word for word but for that name is asked
    events = parse_sse(
        ask(docent_with_corpus, "How do I install Acme with pip on Kubernetes?").text
    )
    # THEN it is not answered, though its sources are still listed
    assert events[-1]["answered"] is False and events[0]["sources"]
    # AND a name the docs use elsewhere (API, on the rate limits page) is no reason to refuse,
    # even when the one source asked for does not hold it
    events = parse_sse(
        ask(docent_with_corpus, "How do I install Acme with pip for my API?", top_k=1).text
    )
    assert [s["document_id"] for s in events[0]["sources"]] == ["install.md"]
    assert events[-1]["answered"] is True
    # AND neither are capitals that name nothing: a shouted question, a stopword in capitals
    for shouted in ("HOW DO I INSTALL ACME WITH PIP, PLEASE?", "How do I install Acme With Pip?"):
        assert parse_sse(ask(docent_with_corpus, shouted).text)[-1]["answered"] is True, shouted


def test_json_mode_returns_the_same_answer_in_one_object(docent_with_corpus: Docent) -> None:
    with docent_with_corpus.client(headers={"Accept": "application/json"}) as client:
        response = client.post("/chat", json={"question": "How do I install Acme with pip?"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {
        "answer", "answered", "citations", "sources", "usage", "model", "request_id"
    }  # fmt: skip
    assert body["answered"] is True
    assert body["citations"] and all(f"[{c}]" in body["answer"] for c in body["citations"])
    streamed = parse_sse(ask(docent_with_corpus, "How do I install Acme with pip?").text)
    assert body["answer"] == "".join(e["content"] for e in streamed if e["type"] == "chunk")


def test_one_source_per_section_even_when_many_chunks_match(tmp_path: Path) -> None:
    long_section = " ".join(
        f"Sentence {i} explains that the frobnicator calibrates widgets carefully."
        for i in range(200)
    )
    doc = {
        "id": "long.md",
        "text": f"# Guide\n\n## Calibration\n\n{long_section}\n",
        "url": "https://x.test/guide",
    }
    with running_docent(tmp_path, chunk_tokens=64, chunk_overlap_tokens=16) as docent:
        assert docent.ingest([doc])["chunks"] > 5
        events = parse_sse(ask(docent, "How does the frobnicator calibrate widgets?", top_k=5).text)

    sources = events[0]["sources"]
    sections = [(s["document_id"], s["heading"]) for s in sources]
    assert sections == [("long.md", "Calibration")]
    assert sources[0]["url"] == "https://x.test/guide#calibration"


def test_filters_restrict_sources(docent_with_corpus: Docent) -> None:
    question = "rate limit invoices install"
    by_doc = parse_sse(ask(docent_with_corpus, question, filter={"document_id": "billing.md"}).text)
    by_tag = parse_sse(ask(docent_with_corpus, question, filter={"tags": ["limits"]}).text)

    assert {s["document_id"] for s in by_doc[0]["sources"]} == {"billing.md"}
    assert {s["document_id"] for s in by_tag[0]["sources"]} == {"limits.md"}


class _Slow:
    """Fake answerer for timing: idles past the heartbeat interval, then answers."""

    model = "slow"

    async def standalone_query(
        self, question: str, history: Sequence[Message], usage: Usage, deadline: float
    ) -> str:
        return question

    async def stream(self, request: AnswerRequest) -> AsyncIterator[str]:
        import asyncio

        await asyncio.sleep(0.5)
        yield f"Done [{request.passages[0].id}] and [S99]."


class _Failing(_Slow):
    async def stream(self, request: AnswerRequest) -> AsyncIterator[str]:
        yield "Partial answer "
        raise UpstreamError("The model stopped answering.")


def test_idle_stream_gets_ping_comments_and_invented_citations_are_dropped(tmp_path: Path) -> None:
    with running_docent(tmp_path, sse_ping_s=0.1, answerer=_Slow()) as docent:
        docent.ingest([{"id": "a.md", "text": "# A\n\nAlpha widgets are blue."}])
        response = ask(docent, "alpha widgets")

    assert ": ping" in response.text.splitlines()
    events = parse_sse(response.text)
    text = "".join(e["content"] for e in events if e["type"] == "chunk")
    assert text == "Done [S1] and ."
    assert events[-1]["citations"] == ["S1"]


def test_failure_after_the_stream_began_is_an_error_event(tmp_path: Path) -> None:
    with running_docent(tmp_path, answerer=_Failing()) as docent:
        docent.ingest([{"id": "a.md", "text": "# A\n\nAlpha widgets are blue."}])
        response = ask(docent, "alpha widgets")

    assert response.status_code == 200
    events = parse_sse(response.text)
    assert [e["type"] for e in events] == ["sources", "chunk", "error"]
    assert events[-1] == {
        "type": "error", "code": "upstream_error", "message": "The model stopped answering."
    }  # fmt: skip


class _Endless(_Slow):
    """Fake answerer for timing: streams until told to stop, recording when it was stopped."""

    def __init__(self) -> None:
        self.deltas = 0
        self.stopped_at: float | None = None

    async def stream(self, request: AnswerRequest) -> AsyncIterator[str]:
        import asyncio
        import time

        try:
            while True:
                await asyncio.sleep(0.02)
                self.deltas += 1
                yield f"word{self.deltas} "
        finally:
            self.stopped_at = time.monotonic()


def test_a_client_that_disconnects_stops_the_generation(tmp_path: Path) -> None:
    import time

    endless = _Endless()
    with running_docent(tmp_path, answerer=endless) as docent:
        docent.ingest([{"id": "a.md", "text": "# A\n\nAlpha widgets are blue."}])
        with docent.client() as client:
            with client.stream("POST", "/chat", json={"question": "alpha widgets"}) as response:
                chunks = 0
                for line in response.iter_lines():
                    if line.startswith('data: {"type":"chunk"'):
                        chunks += 1
                        if chunks == 3:
                            break
            disconnected = time.monotonic()
        deadline = disconnected + 2
        while endless.stopped_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        deltas_at_stop = endless.deltas
        time.sleep(0.3)

    assert endless.stopped_at is not None
    assert endless.stopped_at - disconnected < 1.0
    assert endless.deltas == deltas_at_stop  # nothing more generated (or paid for) after that


def test_the_token_budget_limits_the_passages(tmp_path: Path) -> None:
    from docent.tokens import count_tokens

    docs = [
        {"id": f"d{i}.md", "text": f"# D{i}\n\n" + " ".join(["Zebra facts are striped."] * 60)}
        for i in range(5)
    ]
    question = "zebra facts striped"
    with running_docent(tmp_path, max_context_tokens=250) as small:
        small.ingest(docs)
        tight = parse_sse(ask(small, question).text)
    with running_docent(tmp_path / "wide", max_context_tokens=3000) as wide:
        wide.ingest(docs)
        loose = parse_sse(ask(wide, question).text)

    assert len(loose[0]["sources"]) == 5
    assert 1 <= len(tight[0]["sources"]) < 5
    # The extractive answerer reads the question and the budgeted passages only.
    read = tight[-1]["usage"]["prompt_tokens"] - count_tokens(question)
    assert read <= 250


THROTTLE_GUIDE = (
    "# Throttling\n\n## Setting the throttling policy\n\n"
    "The default throttling policy may be set globally, using the DEFAULT_THROTTLE_CLASSES and "
    "DEFAULT_THROTTLE_RATES settings. The rate descriptions used in DEFAULT_THROTTLE_RATES may "
    "include second, minute, hour or day as the throttle period.\n\n"
    "## Scoped throttles\n\nScopedRateThrottle restricts access to specific parts of the API, "
    "by the throttle_scope property of the view.\n"
)


async def test_a_follow_up_is_answered_on_coverage_alone(services: Services) -> None:
    from docent import chat
    from docent.ingest import DocumentIn

    await services.ingestor.ingest([DocumentIn("throttling.md", THROTTLE_GUIDE)])

    async def prepared(question: str, history: Sequence[Message] = ()) -> chat.Prepared:
        # Every protocol's way in (`/chat`, the OpenAI-compatible endpoint, MCP)
        return await chat.begin(services, chat.Question(question, history=history), {})

    first = "How do I set the default throttle rates?"
    alone = await prepared(first)
    # GIVEN a follow-up, searched with the question before it (the extractive answerer's way)
    history = [Message("user", first), Message("assistant", "Use DEFAULT_THROTTLE_RATES.")]
    follow_up = await prepared("And which periods may a rate use?", history)
    # THEN it finds the section the two turns share, but the BM25 score of their words together
    # is no evidence for `answered`: only the question alone has one
    assert alone.lexical_score > 0
    assert follow_up.sources and follow_up.sources[0].heading == "Setting the throttling policy"
    assert follow_up.lexical_score == 0.0
