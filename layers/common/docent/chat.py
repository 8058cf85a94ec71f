"""The chat pipeline: retrieve before the stream starts, then sources, answer chunks, done.

Everything that can fail with a status (limits, validation, the vector store, the embedder)
happens in `prepare`, before the first byte, so it becomes a proper 4xx/5xx. Once the stream
has begun, a failure is reported in-band as an `error` event and the stream ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from docent import insights, metrics
from docent.display import shown_source
from docent.errors import AnswerFailed, DocentError, UpstreamTimeout
from docent.generation import (
    Answerer,
    AnswerRequest,
    CitationFilter,
    ExtractiveAnswerer,
    LinkFilter,
    Message,
    Passage,
    Usage,
)
from docent.logs import current_request_id
from docent.retrieval import Source, fit_budget, retrieve, unknown_names
from docent.vectors import SearchFilter, VectorStore

if TYPE_CHECKING:
    from docent.embeddings import Embedder
    from docent.services import Services

log = logging.getLogger("docent.chat")


@dataclass(frozen=True)
class Question:
    question: str
    history: Sequence[Message] = ()
    top_k: int = 5
    filter: SearchFilter = field(default_factory=SearchFilter)


@dataclass
class Prepared:
    """A question retrieved for and budgeted, with the answerer that will answer it."""

    question: Question
    sources: list[Source]
    passages: list[Passage]
    usage: Usage
    deadline: float
    answerer: Answerer
    embedding_model: str | None = None  # for the usage metrics
    started: float = field(default_factory=time.monotonic)
    request_id: str = field(default_factory=current_request_id)
    recorder: insights.Recorder | None = None  # where the answer is recorded for insights
    frame_s: float = 0.0  # text that arrives within this of the last frame waits to join the next
    unknown_names: tuple[str, ...] = ()  # asked-about names the docs never mention
    lexical_score: float = 0.0  # the best retrieved section's BM25 score (`Source.lexical`)


def deadline_for(scope: Mapping[str, Any], timeout_s: float) -> float:
    """A monotonic deadline: the request timeout, or less when the Lambda has less time left."""
    budget = timeout_s
    context = scope.get("aws.context")
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        budget = min(budget, max(0.5, remaining() / 1000 - 1.0))
    return time.monotonic() + budget


async def prepare(
    question: Question,
    deadline: float,
    *,
    store: VectorStore,
    embedder: Embedder | None,
    answerer: Answerer,
    max_context_tokens: int,
    token_model: str | None,
) -> Prepared:
    """Retrieve and budget the passages; raises `DocentError` before anything is streamed."""
    started = time.monotonic()
    usage = Usage()
    query = question.question
    unknown: tuple[str, ...] = ()
    # The extractive answerer answers only about what the docs name; a model reads the passages
    # itself and says what they lack.
    extractive = isinstance(answerer, ExtractiveAnswerer)
    try:
        async with asyncio.timeout_at(deadline):
            if question.history:
                query = await answerer.standalone_query(
                    question.question, question.history, usage, deadline
                )
            sources = await retrieve(
                store,
                embedder,
                query,
                top_k=question.top_k,
                search_filter=question.filter,
                usage=usage,
            )
            if extractive:
                unknown = await unknown_names(store, question.question, sources, question.filter)
    except TimeoutError as exc:
        raise UpstreamTimeout("Retrieval did not finish in time.") from exc
    # The extractive answerer reads the passages without a model: no context window to respect
    # exactly, so its budget is estimated and no encoding is built for it.
    passages = fit_budget(sources, max_context_tokens, token_model, estimate=extractive)
    used = {p.id for p in passages}
    # A follow-up is searched with the turn before it: the BM25 score of both turns' words says
    # nothing of this one's, so a follow-up is answered on coverage alone.
    lexical = 0.0 if question.history else max((s.lexical for s in sources), default=0.0)
    return Prepared(
        question,
        [s for s in sources if s.id in used],
        passages,
        usage,
        deadline,
        answerer,
        embedder.model if embedder is not None else None,
        started,
        unknown_names=unknown,
        lexical_score=lexical,
    )


async def begin(services: Services, question: Question, scope: Mapping[str, Any]) -> Prepared:
    """Every protocol's way in (`/chat`, `/v1/chat/completions`, MCP): log, deadline, `prepare`."""
    settings = services.settings
    if settings.log_questions:  # off by default: questions can carry personal data
        log.info("question", extra={"question": question.question})
    deadline = deadline_for(scope, settings.request_timeout_s)
    prepared = await prepare(
        question,
        deadline,
        store=services.store,
        embedder=services.embedder,
        answerer=services.answerer,
        max_context_tokens=settings.max_context_tokens,
        token_model=services.token_model,
    )
    prepared.recorder = insights.Recorder(services.insights, settings)
    prepared.frame_s = settings.stream_frame_ms / 1000
    return prepared


async def events(prepared: Prepared) -> AsyncIterator[dict[str, Any]]:
    """The answer as contract events: `sources`, `chunk`*, then `done` (or `error`)."""
    metrics.stream_opened()
    outcome: dict[str, Any] = {"first": None, "error": "disconnected"}
    try:
        async for event in _events(prepared, outcome):
            yield event
    finally:
        metrics.stream_closed(
            time.monotonic() - prepared.started, outcome["first"], outcome["error"]
        )
        metrics.usage(prepared.answerer.model, prepared.usage, prepared.embedding_model)


async def _events(prepared: Prepared, outcome: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    shown = [shown_source(s.public()) for s in prepared.sources]
    yield {"type": "sources", "sources": shown}
    answerer = prepared.answerer
    citations = CitationFilter([s.id for s in prepared.sources])
    links = LinkFilter([s["url"] for s in shown])
    try:
        stream = answerer.stream(
            AnswerRequest(
                prepared.question.question,
                prepared.question.history,
                prepared.passages,
                prepared.usage,
                prepared.deadline,
                prepared.unknown_names,
                prepared.lexical_score,
            )
        )
        if not getattr(answerer, "paced", False):
            stream = coalesced(stream, prepared.frame_s)
        async for delta in stream:
            text = links.feed(citations.feed(delta))
            if text:
                if outcome["first"] is None:
                    outcome["first"] = time.monotonic() - prepared.started
                yield {"type": "chunk", "content": text}
        tail = links.feed(citations.flush()) + links.flush()
        if tail:
            yield {"type": "chunk", "content": tail}
    except DocentError as exc:
        outcome["error"] = exc.code
        yield ErrorEvent(exc)
        return
    except Exception:
        log.exception("answer failed")
        outcome["error"] = AnswerFailed.code
        yield ErrorEvent(AnswerFailed())
        return
    outcome["error"] = None
    if prepared.recorder is not None:
        # Before `done`: a visitor who rates the answer at once finds it recorded (bounded wait).
        await prepared.recorder(
            prepared.request_id, prepared.question.question, shown, citations.cited
        )
    yield {
        "type": "done",
        "answered": bool(citations.cited),
        "citations": citations.cited,
        "usage": prepared.usage.as_dict(),
        "model": answerer.model,
        "request_id": prepared.request_id,
    }


# Readers still cleaning up after their consumer left (the loop keeps only weak references).
_closing: set[asyncio.Task[None]] = set()


async def coalesced(deltas: AsyncIterator[str], frame_s: float = 0.0) -> AsyncIterator[str]:
    """`deltas`, read by a task of their own; each step yields all the text read since the last.

    Text that arrives within `frame_s` of the last step waits for the rest of that interval and
    leaves with what else arrives meanwhile: at most one frame per `frame_s` per stream, so the
    filters, the encoding and the write to the client are paid per frame, not per token. The
    first text, and text after a longer pause, leaves at once; the end is never held. Tokens that
    arrive while a frame is being written (or while the CPU is busy with other streams) join the
    next frame whatever `frame_s` is. When the consumer stops (a client gone), the reader is
    cancelled at once, which closes the model's stream.
    """
    loop = asyncio.get_running_loop()
    read: list[str] = []
    waiter: asyncio.Future[None] | None = None
    ended: list[BaseException | None] = []
    hold_until = 0.0  # loop time before which new text waits for company
    holding = False  # waiting out `frame_s`: only the timer or the end wakes the consumer

    def wake() -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def reader() -> None:
        try:
            async for delta in deltas:
                read.append(delta)
                if not holding:
                    wake()
        except BaseException as exc:  # handed to the consumer, cancellation included
            ended.append(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            ended.append(None)
        finally:
            wake()

    task = loop.create_task(reader())
    try:
        while True:
            if not read and not ended:
                waiter = loop.create_future()
                await waiter
                waiter = None
            if read and not ended and frame_s:
                hold = hold_until - loop.time()
                if hold > 0:
                    waiter, holding = loop.create_future(), True
                    handle = loop.call_later(hold, wake)
                    try:
                        await waiter  # woken early only by the end of the stream
                    finally:
                        handle.cancel()
                        waiter, holding = None, False
            if read:
                text = "".join(read)
                read.clear()
                hold_until = loop.time() + frame_s
                yield text
            elif ended:
                if ended[0] is not None:
                    raise ended[0]
                return
    finally:
        if not task.done():
            task.cancel()
            _closing.add(task)
            task.add_done_callback(_closing.discard)


async def collect(events_: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """The same answer as one JSON object (`Accept: application/json`)."""
    answer: list[str] = []
    result: dict[str, Any] = {}
    async for event in events_:
        kind = event["type"]
        if kind == "sources":
            result["sources"] = event["sources"]
        elif kind == "chunk":
            answer.append(event["content"])
        elif kind == "error":
            raise failure_of(event)
        elif kind == "done":
            result.update({k: v for k, v in event.items() if k != "type"})
    return {
        "answer": "".join(answer),
        "answered": result.get("answered", False),
        "citations": result.get("citations", []),
        "sources": result.get("sources", []),
        "usage": result.get("usage", {}),
        "model": result.get("model"),
        "request_id": result.get("request_id"),
    }


class ErrorEvent(dict[str, Any]):
    """The in-band `error` event (`type`, `code`, `message` on the wire), which keeps the error
    itself: collected as JSON, the answer fails with its status and headers (`Retry-After`)."""

    def __init__(self, error: DocentError) -> None:
        super().__init__(type="error", code=error.code, message=error.message)
        self.error = error


def failure_of(event: Mapping[str, Any]) -> DocentError:
    """The error an `error` event reports (one built from its fields if it kept none)."""
    if isinstance(event, ErrorEvent):
        return event.error
    failure = AnswerFailed(str(event.get("message") or AnswerFailed.default_message))
    failure.code = str(event.get("code") or failure.code)
    return failure
