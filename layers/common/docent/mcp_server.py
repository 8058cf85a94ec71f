"""`/mcp`: Docent as a Model Context Protocol server (streamable HTTP, stateless, JSON responses).

Each POST is one self-contained exchange, so any process or Lambda instance can answer any
request: there is no session to find again. The caller is resolved here, at the HTTP level, with
Docent's keys (`Authorization: Bearer`, as the MCP spec's HTTP authorization expects, or
`X-API-Key`): a key that is sent but unknown is a 401, never the anonymous tier. The tools
themselves (`docent.mcp_tools`) count each call against the chat rate limit.

The `mcp` SDK costs about half a second to import, so it is imported on the first `/mcp`
request only: `/health` and cold starts never pay for it.
"""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from docent.auth import Caller
from docent.config import Settings
from docent.errors import DocentError, Forbidden
from docent.services import Services
from docent.web import ServicesDep, SettingsDep, get_caller

router = APIRouter(tags=["mcp"])


@dataclass(frozen=True)
class Call:
    """What a tool needs of the HTTP request that carried it."""

    services: Services
    settings: Settings
    request: Request
    caller: Caller


# Set for the duration of one exchange; the SDK's tasks inherit it.
current: contextvars.ContextVar[Call] = contextvars.ContextVar("docent_mcp_call")

# JSON-RPC codes for refusals before any MCP message is read (the spec leaves them to servers).
_RPC_CODES = {401: -32001, 403: -32003, 429: -32029}


def rpc_error(exc: DocentError) -> Response:
    """A refusal in the transport's own form: a JSON-RPC error body with the HTTP status."""
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": _RPC_CODES.get(exc.status_code, -32000), "message": exc.message},
    }
    headers = dict(exc.headers)
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="docent"'
    return Response(json.dumps(body), exc.status_code, headers, media_type="application/json")


def _origin_allowed(origin: str | None, settings: Settings) -> bool:
    """Browsers send `Origin`; only the configured CORS origins may drive the server (the spec
    asks servers to check it against DNS rebinding). Agents and SDKs send none."""
    allowed = settings.cors_allow_origins
    return origin is None or "*" in allowed or origin in allowed


class _Exchange(Response):
    """Hands the untouched request (body not yet read) to the MCP SDK's transport."""

    def __init__(self, call: Call) -> None:
        super().__init__()
        self.call = call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from docent.mcp_tools import serve

        token = current.set(self.call)
        try:
            await serve(self.call.settings, scope, receive, send)
        finally:
            current.reset(token)


_MESSAGE: dict[str, Any] = {
    "type": "object",
    "description": "A JSON-RPC 2.0 message of the Model Context Protocol (or a batch).",
    "properties": {"jsonrpc": {"const": "2.0"}, "method": {"type": "string"}},
    "required": ["jsonrpc"],
}
_REPLY = {"application/json": {"schema": {"type": "object"}}}


@router.post(
    "/mcp",
    summary="MCP server (streamable HTTP, stateless)",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _MESSAGE}}}
    },
    responses={
        200: {"description": "The JSON-RPC response", "content": _REPLY},
        202: {"description": "A notification, accepted"},
        400: {"description": "Not a valid MCP message", "content": _REPLY},
        401: {"description": "An unknown API key (JSON-RPC error)", "content": _REPLY},
        403: {"description": "A browser origin that is not allowed", "content": _REPLY},
        406: {"description": "Accept lacks application/json", "content": _REPLY},
        429: {"description": "Too many invalid keys from this address", "content": _REPLY},
    },
    response_class=Response,
)
async def post_mcp(request: Request, services: ServicesDep, settings: SettingsDep) -> Response:
    """Model Context Protocol over streamable HTTP, for coding agents and MCP clients.

    Tools: `search_docs` (the matching sections with their text and deep links), `ask_docs` (an
    answer with `[S1]` citations and its sources) and `list_documents`. Keys as for `/chat`; each
    tool call counts against the chat rate limit. Tool failures (rate limit, backend down, bad
    arguments) are MCP tool errors with a clear message.
    """
    if not _origin_allowed(request.headers.get("origin"), settings):
        return rpc_error(Forbidden("This origin may not use the MCP server."))
    try:
        caller = await get_caller(request, settings, services)
    except DocentError as exc:
        return rpc_error(exc)
    return _Exchange(Call(services, settings, request, caller))
