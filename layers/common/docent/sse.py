"""Server-Sent Events: one JSON object per `data:` line, `: ping` comments while idle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from sse_starlette import EventSourceResponse

# sse_starlette (and the uvicorn it imports) loads with the first stream, not with the module:
# a JSON answer, the only kind a buffered Lambda function gives, never needs it.

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def encode(event: dict[str, Any]) -> str:
    """An event's `data:` payload: compact JSON, unicode kept as is."""
    return orjson.dumps(event).decode()


def frame(event: dict[str, Any]) -> bytes:
    """One event as the bytes of its SSE frame (what `ServerSentEvent(data=...)` would send)."""
    return b"data: " + orjson.dumps(event) + b"\r\n\r\n"


async def _frames(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    # Bytes go out as they are: no event object to build and encode again for every token.
    async for event in events:
        yield frame(event)


@cache
def _event_stream_class() -> type[EventSourceResponse]:
    from sse_starlette import EventSourceResponse
    from starlette.types import Message, Send

    class _EventStream(EventSourceResponse):
        async def _send_with_timeout(self, send: Send, message: Message) -> None:
            # Without a send timeout there is nothing for a cancel scope per frame to enforce.
            if self.send_timeout is None:
                await send(message)
            else:
                await super()._send_with_timeout(send, message)

    return _EventStream


def event_stream(events: AsyncIterator[dict[str, Any]], ping_s: float) -> EventSourceResponse:
    """A streaming response: no buffering by proxies, a heartbeat every `ping_s` seconds."""
    from sse_starlette import ServerSentEvent

    return _event_stream_class()(
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
