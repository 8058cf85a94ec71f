"""Server-Sent Events: one JSON object per `data:` line, `: ping` comments while idle.

`EventStream` is the whole streaming response, written straight to the ASGI `send`: no task
group, lock or cancel scope per response or per frame (sse_starlette's, about a fifth of the
server's CPU per streamed answer at 50 streams). What it keeps: a `: ping` once a stream has
been idle `ping_s`, a client's disconnect ending the stream at once (the event iterator is
cancelled where it waits, which closes the model's stream), and open streams ending within
half a second when uvicorn is told to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

# The response head, as sse_starlette sent it: the contract's headers, keep-alive, the type.
_HEAD = [
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
    (b"content-type", b"text/event-stream; charset=utf-8"),
]
PING = b": ping\r\n\r\n"
_END = {"type": "http.response.body", "body": b"", "more_body": False}
_EXIT_POLL_S = 0.5


def encode(event: dict[str, Any]) -> str:
    """An event's `data:` payload: compact JSON, unicode kept as is."""
    return orjson.dumps(event).decode()


def frame(event: dict[str, Any]) -> bytes:
    """One event as the bytes of its SSE frame."""
    return b"data: " + orjson.dumps(event) + b"\r\n\r\n"


def data_frame(payload: str) -> bytes:
    """A one-line payload (compact JSON, `[DONE]`) as the bytes of its SSE frame."""
    return b"data: " + payload.encode() + b"\r\n\r\n"


class Last(bytes):
    """A stream's last frame: it leaves with the response's end, in one write."""


# The contract's stream ends with `done` or `error`: nothing follows either.
_FINAL = frozenset({"done", "error"})


async def _frames(events: AsyncIterator[dict[str, Any]]) -> AsyncGenerator[bytes, None]:
    # Bytes go out as they are: no event object to build and encode again for every token.
    async for event in events:
        data = frame(event)
        yield Last(data) if event.get("type") in _FINAL else data


class EventStream(Response):
    """A `text/event-stream` response of ready SSE frames (bytes), with heartbeats."""

    def __init__(self, frames: AsyncGenerator[bytes, None], ping_s: float) -> None:
        self.frames = frames
        self.ping_s = ping_s
        self.status_code = 200
        self.media_type = "text/event-stream"
        self.background: BackgroundTask | None = None
        self.raw_headers = list(_HEAD)  # a copy: a middleware may add to the list it is sent
        # The state of a running response, in attributes rather than closures.
        self._gone = False  # ended from outside: the cancellation that follows ends the stream
        self._ended = False  # past the last frame: a disconnect or an exit cancels nothing now
        self._sending = False
        self._written = 0.0  # loop time of the last write
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        frames = self.frames
        self._written = loop.time()
        watcher = loop.create_task(self._watch(receive, task))
        self._timer = loop.call_later(self.ping_s, self._tick, loop, send)
        streams = _open_on(loop)
        streams[task] = self
        try:
            try:
                async for chunk in frames:
                    if self._ended:
                        raise RuntimeError("a frame after the stream's last one")
                    self._sending = True
                    last = type(chunk) is Last
                    await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                    self._sending = False
                    self._written = loop.time()
                    self._ended = last  # the response has ended: the rest is clean-up
            finally:
                ended, self._ended = self._ended, True
            if not ended:
                await send(_END)
        except asyncio.CancelledError:
            # Our own cancellation (the client left, the server exits) ends the response here;
            # any other (the server cancelling the request) goes on up.
            if not self._gone or task.uncancel() != 0:
                raise
            with contextlib.suppress(Exception):
                await send(_END)  # nothing to a client that left; the stream's end otherwise
        finally:
            self._ended = True
            streams.pop(task, None)
            watcher.cancel()
            self._timer.cancel()
            await frames.aclose()
        if self.background is not None:
            await self.background()

    async def _watch(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        """Wait for the client to leave; then cancel the stream where it waits."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.end(task)
                return

    def end(self, task: asyncio.Task[Any]) -> None:
        """End the stream at its next wait (a disconnect, or the server exiting)."""
        if not self._ended and not self._gone:
            self._gone = True
            task.cancel()

    def _tick(self, loop: asyncio.AbstractEventLoop, send: Send) -> None:
        """The heartbeat: a ping once the stream has been idle `ping_s` (never in the middle of
        a write), then the timer again for when the stream could next have been idle that long."""
        now = loop.time()
        due = self._written + self.ping_s
        if now >= due:
            if not self._sending and not self._ended:  # never after the response's end
                self._written = now
                _tasks.add(ping := loop.create_task(self._ping(send)))
                ping.add_done_callback(_tasks.discard)
            due = now + self.ping_s
        self._timer = loop.call_later(due - now, self._tick, loop, send)

    async def _ping(self, send: Send) -> None:
        self._sending = True
        try:
            # A server that raises for a client gone: the watcher ends the stream.
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": PING, "more_body": True})
        finally:
            self._sending = False


# Ping and exit-watch tasks (the loop keeps only weak references), and the streams open per loop.
_tasks: set[asyncio.Task[None]] = set()
_open: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[asyncio.Task[Any], EventStream]
] = weakref.WeakKeyDictionary()


def _open_on(loop: asyncio.AbstractEventLoop) -> dict[asyncio.Task[Any], EventStream]:
    streams = _open.get(loop)
    if streams is None:
        streams = _open[loop] = {}
        watcher = loop.create_task(_exit_watch(loop, streams))
        _tasks.add(watcher)
        watcher.add_done_callback(_tasks.discard)
    return streams


def quiet() -> bool:
    """No answer is streaming on this loop now (upkeep that pauses the loop waits for this)."""
    return not _open.get(asyncio.get_running_loop())


def _server_exiting() -> bool:
    """uvicorn's server (its SIGTERM handler is a bound method of it) has been told to exit."""
    handler = signal.getsignal(signal.SIGTERM)
    return bool(getattr(getattr(handler, "__self__", None), "should_exit", False))


async def _exit_watch(
    loop: asyncio.AbstractEventLoop, streams: dict[asyncio.Task[Any], EventStream]
) -> None:
    """End the open streams when the server exits: uvicorn waits for every open response,
    and a stream could hold a shutdown for as long as an answer takes."""
    try:
        while True:
            await asyncio.sleep(_EXIT_POLL_S)
            if _server_exiting():
                break
        for task, stream in list(streams.items()):
            stream.end(task)
    finally:
        _open.pop(loop, None)


def event_stream(events: AsyncIterator[dict[str, Any]], ping_s: float) -> EventStream:
    """A streaming response: no buffering by proxies, a heartbeat every `ping_s` idle seconds."""
    return EventStream(_frames(events), ping_s)


def wants_json(accept: str | None) -> bool:
    """`Accept: application/json` (and not event-stream) asks for the answer in one object."""
    if not accept:
        return False
    accept = accept.lower()
    return "application/json" in accept and "text/event-stream" not in accept
