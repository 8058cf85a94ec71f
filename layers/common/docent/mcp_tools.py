"""The MCP tools over the chat pipeline: `search_docs`, `ask_docs`, `list_documents`.

Imported on the first `/mcp` request only (the `mcp` SDK is heavy). Every tool runs the same
code as `/chat`: `chat.begin` retrieves and budgets the passages, `chat.events` answers, and the
call counts against the chat rate limit of its caller. A failure is an MCP tool error whose
text is Docent's own message (never a trace); a crash is logged and reported as "internal".
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from docent import __version__, chat
from docent.config import Settings
from docent.display import shown_source
from docent.errors import DocentError
from docent.generation import Message
from docent.mcp_server import Call, current
from docent.openai_api import SOURCES_HEADING, sources_block
from docent.vectors import SearchFilter
from docent.web import rate_limit

log = logging.getLogger("docent.mcp")

T = TypeVar("T")

MAX_QUESTION_CHARS = 2000
LIST_LIMIT = 200  # documents shown by list_documents
LIST_SCAN = 10_000  # documents looked at for a prefix before giving up

INSTRUCTIONS = """\
Docent answers from one product's documentation, with citations. Prefer it to memory for
anything about this product: APIs, configuration, setup, limits, behaviour.
- search_docs: the exact passages (text plus a deep link) for a query. Use it to read the
  documentation yourself, quote it, or check a detail; it is fast and cheap.
- ask_docs: a short written answer with [S1]-style citations and the sources behind them. Use it
  for a direct question; `answered` is false when the documentation does not say.
- list_documents: which documents exist (ids, titles, links), to orient or to pick a document
  id for search_docs' filter.
Cite the links the tools return; do not invent ones."""


# Arguments and results -------------------------------------------------------------------


class DocFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: Annotated[
        str | None,
        Field(description="Only this document (an id from list_documents).", max_length=512),
    ] = None
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]],
        Field(description="Only documents carrying all of these tags.", max_length=20),
    ] = []


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: Annotated[str, Field(min_length=1, max_length=8000)]


class Section(BaseModel):
    id: str
    document_id: str
    title: str | None
    heading: str | None
    url: str | None
    score: float
    text: str


class SearchResult(BaseModel):
    query: str
    sections: list[Section]


class Answer(BaseModel):
    answer: str
    answered: bool
    citations: list[str]
    sources: list[dict[str, Any]]
    model: str
    request_id: str


class DocumentEntry(BaseModel):
    id: str
    title: str | None
    url: str | None
    tags: list[str]


class DocumentListing(BaseModel):
    documents: list[DocumentEntry]
    complete: bool


def _result(text: str, data: BaseModel) -> CallToolResult:
    """What the model reads (text) and what a program reads (the structured content)."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=data.model_dump()
    )


# The tools ---------------------------------------------------------------------------------


async def _guarded(tool: str, work: Awaitable[T]) -> T:
    """Docent's errors become tool errors with their message; anything else is logged."""
    about = {"tool": tool}
    try:
        result = await work
    except DocentError as exc:
        log.info("tool refused", extra={**about, "code": exc.code})
        raise ToolError(exc.message) from None
    except ToolError:
        raise
    except Exception:
        log.exception("tool failed", extra=about)
        raise ToolError(f"{tool} failed with an internal error.") from None
    log.info("tool", extra=about)  # which tools agents use; the request line has the rest
    return result


async def _admit(call: Call) -> None:
    """Count the call against the caller's chat limit (the same window as /chat)."""
    check = rate_limit("chat")
    await check(call.request, call.caller, call.settings, call.services)


def _question(text: str, name: str = "question") -> str:
    question = text.strip()
    if not question:
        raise ToolError(f"The {name} is empty.")
    if len(question) > MAX_QUESTION_CHARS:
        raise ToolError(
            f"The {name} is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}. "
            "Make it shorter."
        )
    return question


async def search_docs(
    query: Annotated[
        str, Field(description="What to look for, in words the docs would use (<= 2000 chars).")
    ],
    top_k: Annotated[int, Field(ge=1, le=20, description="How many sections (1-20).")] = 5,
    filter: Annotated[
        DocFilter | None, Field(description="Narrow to one document or to tagged documents.")
    ] = None,
) -> Annotated[CallToolResult, SearchResult]:
    """Find the documentation sections that match a query and return their text.

    Each section comes with its title, heading, a deep link to it and the passage itself, best
    match first, within a token budget. Use it to read the docs, quote them or check a detail.
    For a written answer, use ask_docs instead.
    """
    text = _question(query, "query")

    async def work() -> CallToolResult:
        call = current.get()
        await _admit(call)
        question = chat.Question(
            question=text,
            top_k=top_k,
            filter=SearchFilter(filter.document_id, tuple(filter.tags))
            if filter
            else SearchFilter(),
        )
        prepared = await chat.begin(call.services, question, call.request.scope)
        passages = {p.id: p.text for p in prepared.passages}
        # Titles, headings and urls as every other answer shows them: plain text, http(s) only.
        shown = [(s, shown_source(s.public())) for s in prepared.sources]
        sections = [
            Section(
                id=s.id,
                document_id=s.document_id,
                title=clean["title"],
                heading=clean["heading"],
                url=clean["url"],
                score=round(s.score, 6),
                text=passages.get(s.id, s.text),
            )
            for s, clean in shown
        ]
        return _result(_search_text(text, sections), SearchResult(query=text, sections=sections))

    return await _guarded("search_docs", work())


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _search_text(query: str, sections: list[Section]) -> str:
    if not sections:
        return f"No section of the documentation matches {query!r}. Try other words."
    parts = [f"{_count(len(sections), 'section')} match {query!r}, best first."]
    for s in sections:
        name = " › ".join(p for p in (s.title or s.document_id, s.heading) if p)
        link = f"\nLink: {s.url}" if s.url else ""
        parts.append(f"[{s.id}] {name}{link}\n\n{s.text}")
    return "\n\n---\n\n".join(parts)


async def ask_docs(
    question: Annotated[str, Field(description="The question, in full (up to 2000 characters).")],
    history: Annotated[
        list[Turn] | None,
        Field(description="Earlier turns of this conversation, oldest first.", max_length=20),
    ] = None,
) -> Annotated[CallToolResult, Answer]:
    """Answer a question from the documentation, citing its sources.

    Returns a short answer with [S1]-style citations, the sources they point to (title, deep
    link, snippet) and `answered` (false when the documentation does not hold the answer; the
    text then says so instead of guessing). Pass `history` for a follow-up question.
    """
    text = _question(question)

    async def work() -> CallToolResult:
        call = current.get()
        await _admit(call)
        # An earlier ask_docs answer may come back whole: its Sources list is not history.
        turns = [(t.role, t.content.split(SOURCES_HEADING, 1)[0].strip()) for t in history or ()]
        asked = chat.Question(
            question=text, history=tuple(Message(role, said) for role, said in turns if said)
        )
        prepared = await chat.begin(call.services, asked, call.request.scope)
        answer = await chat.collect(chat.events(prepared))
        body = answer["answer"] + sources_block(answer["sources"], answer["citations"])
        return _result(body, Answer.model_validate(answer))

    return await _guarded("ask_docs", work())


async def list_documents(
    prefix: Annotated[
        str | None, Field(description="Only ids starting with this, e.g. 'guide/'.", max_length=512)
    ] = None,
) -> Annotated[CallToolResult, DocumentListing]:
    """List the documents Docent knows: id, title, link and tags.

    Use it to see what the documentation covers or to find a document id for search_docs'
    filter. Shows at most 200; narrow with `prefix` when there are more.
    """

    async def work() -> CallToolResult:
        call = current.get()
        await _admit(call)
        found: list[DocumentEntry] = []
        scanned, offset, complete = 0, None, True
        while True:
            heads, offset = await call.services.store.documents(500, offset)
            scanned += len(heads)
            for head in heads:
                document_id = str(head.payload["document_id"])
                if prefix and not document_id.startswith(prefix):
                    continue
                if len(found) == LIST_LIMIT:
                    complete = False
                    break
                found.append(
                    DocumentEntry(
                        id=document_id,
                        title=head.payload.get("title"),
                        url=head.payload.get("url"),
                        tags=list(head.payload.get("tags") or []),
                    )
                )
            if offset is None or not complete:
                break
            if scanned >= LIST_SCAN:
                complete = False
                break
        listing = DocumentListing(documents=found, complete=complete)
        return _result(_listing_text(listing, prefix), listing)

    return await _guarded("list_documents", work())


def _listing_text(listing: DocumentListing, prefix: str | None) -> str:
    where = f" with ids starting {prefix!r}" if prefix else ""
    if not listing.documents:
        return f"No documents{where}."
    head = f"{_count(len(listing.documents), 'document')}{where}"
    head += ":" if listing.complete else " (not all of them: narrow with `prefix`):"
    lines = [head]
    for d in listing.documents:
        line = f"- {d.id}"
        if d.title:
            line += f": {d.title}"
        if d.url:
            line += f" <{d.url}>"
        if d.tags:
            line += f" [tags: {', '.join(d.tags)}]"
        lines.append(line)
    return "\n".join(lines)


# The server --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def server() -> MCPServer[Any]:
    """The process's MCP server: tools registered once, reused by every exchange."""
    # MCPServer calls logging.basicConfig (a handler on the root logger, so every line of
    # Docent's would print twice); Docent's logging stays as it was configured.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    mcp: MCPServer[Any] = MCPServer(
        "docent", title="Docent", version=__version__, instructions=INSTRUCTIONS
    )
    root.handlers[:], root.level = handlers, level
    # One manager per request (see _exchange): its start and stop are not news.
    logging.getLogger("mcp.server.streamable_http_manager").setLevel(logging.WARNING)
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    mcp.add_tool(search_docs, title="Search the documentation", annotations=read_only)
    mcp.add_tool(ask_docs, title="Ask the documentation", annotations=read_only)
    mcp.add_tool(list_documents, title="List the documents", annotations=read_only)
    return mcp


@asynccontextmanager
async def _exchange(settings: Settings) -> AsyncIterator[StreamableHTTPSessionManager]:
    # A manager runs once; stateless, it holds nothing worth keeping, so one per request
    # works the same under uvicorn and under Mangum (which runs no lifespan).
    manager = StreamableHTTPSessionManager(
        app=server()._lowlevel_server,
        json_response=True,  # one JSON reply per POST: what Mangum and API Gateway can carry
        stateless=True,
        max_request_body_size=settings.max_chat_body_bytes,
    )
    async with manager.run():
        yield manager


async def serve(settings: Settings, scope: Scope, receive: Receive, send: Send) -> None:
    """One MCP exchange: the request in, the JSON-RPC reply out."""
    async with _exchange(settings) as manager:
        await manager.handle_request(scope, receive, send)
