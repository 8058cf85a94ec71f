"""The OpenAI chat-completions protocol over the chat pipeline: `/v1/chat/completions`, models.

SDKs and chat UIs that take a base URL use Docent as a "model". The last user message is the
question and the earlier user and assistant messages are the history; system and developer
messages are ignored, so a client cannot talk the answerer out of its sources. The answer keeps
its `[S1]` citations; the sources ride along in the extra fields `sources` (and `citations`,
`answered`) and, unless `COMPLETIONS_SOURCES_BLOCK=off`, as a closing "Sources" list in the text.
Errors come in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the
status Docent gives them, so the SDKs raise their usual exceptions (`RateLimitError`, ...).
Every OpenAI client sends a key, so `/v1` takes no anonymous callers: a missing key is a 401
like an unknown one. Completions count against the chat rate limit of their key.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from docent import chat, sse
from docent.auth import Caller
from docent.errors import BadRequest, DocentError, Unauthorized
from docent.generation import Message
from docent.services import Services
from docent.vectors import SearchFilter
from docent.web import CallerDep, ServicesDep, SettingsDep, rate_limit

log = logging.getLogger("docent.openai")

MAX_QUESTION_CHARS = 2000
MAX_HISTORY = 20
MAX_HISTORY_CHARS = 8000
SOURCES_HEADING = "\n\nSources:\n"
# Accepted as the model of any request: whatever answers in this deployment.
ALIAS = "docent"

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_CODES = {"unauthorized": "invalid_api_key", "rate_limited": "rate_limit_exceeded"}


class OpenAIError(BadRequest):
    """A request the protocol refuses, naming the parameter at fault."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str = "invalid_value",
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.param = param
        self.code = code
        self.status_code = status


def error_body(exc: DocentError) -> dict[str, Any]:
    """OpenAI's error object for a Docent error (same message, same status)."""
    kind = _TYPES.get(exc.status_code)
    if kind is None:
        kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
    return {
        "error": {
            "message": exc.message,
            "type": kind,
            "param": getattr(exc, "param", None),
            "code": _CODES.get(exc.code, exc.code),
        }
    }


def _validation(exc: RequestValidationError) -> OpenAIError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return OpenAIError("The request body is not valid JSON.", code="invalid_json")
    first = errors[0] if errors else {}
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    return OpenAIError(f"{param or 'body'}: {first.get('msg', 'invalid value')}", param=param)


class OpenAIRoute(APIRoute):
    """Routes whose every failure, validation included, answers in OpenAI's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                failure: DocentError = _validation(exc)
            except DocentError as exc:
                failure = exc
            except StarletteHTTPException as exc:  # a body FastAPI could not even parse
                failure = OpenAIError(
                    "The request body could not be parsed."
                    if exc.status_code == 400
                    else str(exc.detail),
                    code={400: "invalid_json", 413: "request_too_large"}.get(
                        exc.status_code, "http_error"
                    ),
                    status=exc.status_code,
                )
            except Exception:
                log.exception("completion failed")
                failure = DocentError()
            if failure.status_code >= 500:
                log.warning("error", extra={"code": failure.code, "status": failure.status_code})
            return JSONResponse(error_body(failure), failure.status_code, headers=failure.headers)

        return guarded


router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIRoute)


# Requests ----------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text: a string, or its text parts joined (images and the like skipped)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.type == "text" and p.text)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class CompletionFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    document_id: Annotated[str | None, Field(min_length=1, max_length=512)] = None
    tags: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=20)
    ] = []


class CompletionRequest(BaseModel):
    """The chat-completions body. Sampling fields (temperature, max_tokens, ...) are accepted and
    ignored; `top_k` and `filter` are Docent's own (the SDKs send them through `extra_body`)."""

    model_config = ConfigDict(extra="ignore")

    model: Annotated[str, Field(min_length=1, max_length=200)]
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=500)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int | None, Field(ge=1, le=1)] = None
    top_k: Annotated[int, Field(ge=1, le=20)] = 5
    filter: CompletionFilter | None = None


def question_of(body: CompletionRequest) -> chat.Question:
    """The last user message as the question, the user and assistant turns before it as history."""
    turns = [(i, m) for i, m in enumerate(body.messages) if m.role in ("user", "assistant")]
    if not turns or turns[-1][1].role != "user":
        raise OpenAIError("The last message must come from the user.", param="messages")
    index, last = turns[-1]
    question = last.text().strip()
    if not question:
        raise OpenAIError("The last user message is empty.", param=f"messages.{index}.content")
    if len(question) > MAX_QUESTION_CHARS:
        raise OpenAIError(
            f"The question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}.",
            param=f"messages.{index}.content",
            code="string_above_max_length",
        )
    history = [
        Message(m.role, text[:MAX_HISTORY_CHARS])  # type: ignore[arg-type]
        for _, m in turns[:-1]
        # An earlier answer comes back with its Sources list: the history needs only the answer.
        if (text := m.text().split(SOURCES_HEADING, 1)[0].strip())
    ][-MAX_HISTORY:]
    flt = body.filter
    return chat.Question(
        question=question,
        history=tuple(history),
        top_k=body.top_k,
        filter=SearchFilter(flt.document_id, tuple(flt.tags)) if flt else SearchFilter(),
    )


def model_of(services: Services, requested: str) -> str:
    """The answer mode's model name; an unknown model is 404, as OpenAI answers it."""
    model = services.answerer.model
    if requested not in (model, ALIAS):
        raise OpenAIError(
            f"The model {requested!r} does not exist here; use {model!r} (or {ALIAS!r}).",
            param="model",
            code="model_not_found",
            status=404,
        )
    return model


async def require_key(caller: CallerDep) -> Caller:
    """Every OpenAI client sends a key, so none at all is a misconfiguration: say so (401)."""
    if caller.tier == "anonymous":
        raise Unauthorized("An API key is required: send it as Authorization: Bearer <key>.")
    return caller


KeyDep = Annotated[Caller, Depends(require_key)]


# Responses ---------------------------------------------------------------------------------


def sources_block(sources: Sequence[dict[str, Any]], cited: Sequence[str]) -> str:
    """The cited sources as a closing list: `- [S1] Title › Heading: url`."""
    by_id = {s["id"]: s for s in sources}
    lines = []
    for source_id in cited:
        source = by_id.get(source_id)
        if source is None:
            continue
        name = " › ".join(p for p in (source.get("title"), source.get("heading")) if p)
        name = name or str(source.get("document_id"))
        link = f": {source['url']}" if source.get("url") else ""
        lines.append(f"- [{source_id}] {name}{link}")
    return SOURCES_HEADING + "\n".join(lines) if lines else ""


def usage_of(usage: dict[str, int]) -> dict[str, int]:
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion(answer: dict[str, Any], model: str, created: int, block: bool) -> dict[str, Any]:
    """A whole `chat.completion` from the collected answer."""
    text = answer["answer"]
    if block:
        text += sources_block(answer["sources"], answer["citations"])
    return {
        "id": f"chatcmpl-{answer['request_id']}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage_of(answer["usage"]),
        "system_fingerprint": None,
        "sources": answer["sources"],
        "citations": answer["citations"],
        "answered": answer["answered"],
    }


async def chunks(
    events: AsyncIterator[dict[str, Any]],
    *,
    completion_id: str,
    model: str,
    created: int,
    include_usage: bool,
    block: bool,
) -> AsyncIterator[str]:
    """The answer as `chat.completion.chunk` payloads, then `[DONE]`.

    The first chunk carries the role and the sources, the last one `finish_reason`, the
    citations and `answered`; with `include_usage` a final chunk with no choices holds the usage.
    A failure after the stream began is an `{"error": ...}` payload, which the SDKs raise.
    """

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }
        if include_usage:
            payload["usage"] = None
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

    # A text chunk is the same JSON around its content: built once, filled in per chunk (an
    # answer is many small chunks, and this is most of what the protocol adds per answer).
    head, _, tail = chunk({"content": ""}).partition('"content":""')
    sources: list[dict[str, Any]] = []
    async for event in events:
        kind = event["type"]
        if kind == "sources":
            sources = event["sources"]
            yield chunk({"role": "assistant", "content": ""}, sources=sources)
        elif kind == "chunk":
            content = json.dumps(event["content"], ensure_ascii=False)
            yield f'{head}"content":{content}{tail}'

        elif kind == "error":
            yield json.dumps(error_body(chat.failure_of(event)), ensure_ascii=False)
            return
        elif kind == "done":
            tail = sources_block(sources, event["citations"]) if block else ""
            if tail:
                yield chunk({"content": tail})
            yield chunk({}, "stop", citations=event["citations"], answered=event["answered"])
            if include_usage:
                yield json.dumps(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": None,
                        "choices": [],
                        "usage": usage_of(event["usage"]),
                    },
                    separators=(",", ":"),
                )
    yield "[DONE]"


# Routes ------------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _card(model: str) -> ModelCard:
    return ModelCard(id=model, created=0, owned_by="docent")


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": "An error in OpenAI's shape: {error: {message, type, param, code}}"}
    for status in (400, 401, 404, 429, 503)
}


@router.get("/models", response_model=ModelList, responses=_ERRORS)
async def list_models(_: KeyDep, services: ServicesDep) -> ModelList:
    """The one model that answers here: the configured answer mode (`extractive` or CHAT_MODEL)."""
    return ModelList(data=[_card(services.answerer.model)])


@router.get("/models/{model}", response_model=ModelCard, responses=_ERRORS)
async def get_model(model: str, _: KeyDep, services: ServicesDep) -> ModelCard:
    """One model by name (`docent` names whichever answers here)."""
    return _card(model_of(services, model))


@router.post(
    "/chat/completions",
    dependencies=[Depends(require_key), Depends(rate_limit("chat"))],
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
)
async def create_completion(
    body: CompletionRequest, request: Request, services: ServicesDep, settings: SettingsDep
) -> Response:
    """Answer the last user message from the documentation (OpenAI chat-completions protocol).

    The reply carries `[S1]` citations in its text, `sources` (first chunk when streamed),
    `citations` and `answered` (last chunk when streamed) as extra fields.
    """
    model = model_of(services, body.model)
    question = question_of(body)
    prepared = await chat.begin(services, question, request.scope)
    events = chat.events(prepared)
    created = int(time.time())
    block = settings.completions_sources_block
    if not body.stream:
        return JSONResponse(completion(await chat.collect(events), model, created, block))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    payloads = chunks(
        events,
        completion_id=f"chatcmpl-{prepared.request_id}",
        model=model,
        created=created,
        include_usage=include_usage,
        block=block,
    )
    return sse.EventStream(_frames(payloads), settings.sse_ping_s)


async def _frames(payloads: AsyncIterator[str]) -> AsyncGenerator[bytes, None]:
    async for payload in payloads:
        yield sse.data_frame(payload)
