"""The chat function: `POST /chat`, answers streamed as Server-Sent Events (or one JSON object)."""

from __future__ import annotations

import gc

# A cold start's imports allocate hundreds of thousands of objects that live as long as the
# process: collecting while they load only scans them again and again (about 7% of the
# function's first-response CPU). Collection resumes at the end of this module.
gc.disable()

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from docent import chat, insights, snapstart, sse
from docent.aws import http_handler
from docent.config import get_settings
from docent.generation import Message
from docent.mcp_server import router as mcp_router
from docent.openai_api import router as openai_router
from docent.vectors import SearchFilter
from docent.web import ServicesDep, SettingsDep, create_app, rate_limit

router = APIRouter(tags=["chat"])


MAX_TURN_CHARS = 8000


class HistoryMessage(BaseModel):
    """One earlier turn. An assistant turn is Docent's own answer sent back, and an answer can
    be longer than a turn may be (extractive answers quote whole passages): it is cut to the
    limit, not refused, so a conversation never locks up after a long answer."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: Annotated[str, Field(min_length=1)]

    @model_validator(mode="after")
    def _bounded(self) -> HistoryMessage:
        if len(self.content) > MAX_TURN_CHARS:
            if self.role == "user":
                raise ValueError(f"a user turn holds at most {MAX_TURN_CHARS} characters")
            self.content = self.content[:MAX_TURN_CHARS]
        return self


class ChatFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: Annotated[str | None, Field(min_length=1, max_length=512)] = None
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=20)
    ] = []


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Annotated[str, Field(min_length=1, max_length=2000)]
    history: Annotated[list[HistoryMessage], Field(max_length=20)] = []
    top_k: Annotated[int, Field(ge=1, le=20)] = 5
    filter: ChatFilter | None = None

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class ChatAnswer(BaseModel):
    """The JSON answer (`Accept: application/json`); the stream carries the same fields."""

    answer: str
    answered: bool
    citations: list[str]
    sources: list[dict[str, Any]]
    usage: dict[str, int]
    model: str
    request_id: str


@router.post(
    "/chat",
    dependencies=[Depends(rate_limit("chat"))],
    response_model=ChatAnswer,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def post_chat(
    body: ChatRequest, request: Request, services: ServicesDep, settings: SettingsDep
) -> Response:
    """Answer a question from the documentation, with sources and inline citations."""
    question = chat.Question(
        question=body.question.strip(),
        history=tuple(Message(m.role, m.content) for m in body.history),
        top_k=body.top_k,
        filter=SearchFilter(body.filter.document_id, tuple(body.filter.tags))
        if body.filter
        else SearchFilter(),
    )
    prepared = await chat.begin(services, question, request.scope)
    events = chat.events(prepared)
    if sse.wants_json(request.headers.get("accept")):
        return JSONResponse(await chat.collect(events))
    return sse.event_stream(events, settings.sse_ping_s)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    rating: Literal["up", "down"]
    comment: Annotated[str | None, Field(max_length=1000)] = None


@router.post("/feedback", status_code=204, dependencies=[Depends(rate_limit("feedback"))])
async def post_feedback(body: FeedbackRequest, services: ServicesDep) -> Response:
    """Rate an answer by its `request_id` (anonymous; a later rating replaces an earlier one)."""
    await insights.rate_answer(services, body.request_id, body.rating, body.comment)
    return Response(status_code=204)


app = create_app(router, openai_router, mcp_router, title="Docent chat")


@app.get("/health", include_in_schema=False)
async def get_health() -> dict[str, str]:
    """Liveness of this process: the Web Adapter's readiness check path."""
    return {"status": "ok"}


# Behind the Web Adapter (functions/chat/run.sh): its SnapStart hooks, where their variables set
# paths (the adapter refuses outside requests to them). Under Mangum: the runtime's hooks.
_settings = get_settings()
snapstart.hook_routes(
    app,
    "chat",
    (
        _settings.aws_lwa_snapstart_before_checkpoint_path,
        _settings.aws_lwa_snapstart_after_restore_path,
    ),
)
snapstart.register("chat")
# Buffered HTTP invocations (the HTTP API's POST /chat, `sam local invoke`): Mangum, no lifespan.
handler = http_handler(app)
# What the imports built is permanent: frozen, later collections never scan it again.
gc.freeze()
gc.enable()
