"""Server-Sent Events: one JSON object per `data:` line, `: ping` comments while idle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode(event: dict[str, Any]) -> str:
    """An event's `data:` payload: compact JSON, unicode kept as is."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


async def _frames(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[ServerSentEvent]:
    async for event in events:
        yield ServerSentEvent(data=encode(event))


def event_stream(events: AsyncIterator[dict[str, Any]], ping_s: float) -> EventSourceResponse:
    """A streaming response: no buffering by proxies, a heartbeat every `ping_s` seconds."""
    return EventSourceResponse(
        _frames(events),
        headers=HEADERS,
        ping=ping_s,
        sep="\n",
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
    )


def wants_json(accept: str | None) -> bool:
    """`Accept: application/json` (and not event-stream) asks for the answer in one object."""
    if not accept:
        return False
    accept = accept.lower()
    return "application/json" in accept and "text/event-stream" not in accept
