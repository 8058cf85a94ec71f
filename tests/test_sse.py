"""`sse.EventStream`, the streaming response, on a bare ASGI `send` and `receive`: the head, the
frames as given, a ping only when idle, a client that leaves or a server that exits ending the
stream where it waits, and every other cancellation left to the server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from docent import sse

SCOPE = {"type": "http", "method": "POST", "path": "/chat"}


class Client:
    """The ASGI side of one connection: what was sent, and a disconnect when told."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.left = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def receive(self) -> dict[str, Any]:
        await self.left.wait()
        return {"type": "http.disconnect"}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


class Frames:
    """Frames with pauses between them; notes when (and whether) it was stopped."""

    def __init__(self, *steps: bytes | float) -> None:
        self.steps = steps
        self.stopped_at: float | None = None
        self.finished = False

    async def __call__(self) -> AsyncGenerator[bytes, None]:
        try:
            for step in self.steps:
                if isinstance(step, bytes):
                    yield step
                else:
                    await asyncio.sleep(step)
            self.finished = True
        finally:
            self.stopped_at = time.monotonic()


async def test_the_head_and_the_frames_go_out_as_given_and_the_stream_ends() -> None:
    client, frames = Client(), Frames(b"data: 1\r\n\r\n", 0.01, b"data: 2\r\n\r\n")

    await sse.EventStream(frames(), ping_s=5)(SCOPE, client.receive, client.send)

    start = client.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert dict(start["headers"]) == {
        b"content-type": b"text/event-stream; charset=utf-8",
        b"cache-control": b"no-cache",
        b"x-accel-buffering": b"no",
        b"connection": b"keep-alive",
    }
    assert client.body == b"data: 1\r\n\r\ndata: 2\r\n\r\n"
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert frames.finished


async def test_an_idle_stream_gets_pings_and_a_busy_one_none() -> None:
    idle, busy = Client(), Client()
    # 1.2 s of frames 0.02 s apart: never idle 0.4 s, even if a loaded machine stretches a gap
    # tenfold; the idle stream is silent 1.1 s, long enough for a ping or more.
    steady = [x for _ in range(60) for x in (b"data: x\r\n\r\n", 0.02)]

    await asyncio.gather(
        sse.EventStream(Frames(b"data: a\r\n\r\n", 1.1, b"data: b\r\n\r\n")(), ping_s=0.4)(
            SCOPE, idle.receive, idle.send
        ),
        sse.EventStream(Frames(*steady)(), ping_s=0.4)(SCOPE, busy.receive, busy.send),
    )

    assert idle.body.startswith(b"data: a\r\n\r\n: ping\r\n\r\n")
    assert 1 <= idle.body.count(sse.PING) <= 3  # every 0.4 s of the 1.1 s of silence
    assert idle.body.endswith(b"data: b\r\n\r\n")
    assert sse.PING not in busy.body


async def test_a_client_that_leaves_stops_the_frames_where_they_wait() -> None:
    client, frames = Client(), Frames(b"data: 1\r\n\r\n", 30, b"data: never\r\n\r\n")

    async def leave() -> float:
        await asyncio.sleep(0.05)
        client.left.set()
        return time.monotonic()

    left, _ = await asyncio.wait_for(
        asyncio.gather(
            leave(), sse.EventStream(frames(), ping_s=5)(SCOPE, client.receive, client.send)
        ),
        5,
    )  # the response returns on its own: the cancellation was its own, not the caller's

    assert frames.stopped_at is not None and frames.stopped_at - left < 0.05
    assert not frames.finished
    assert b"never" not in client.body


async def test_a_cancellation_from_the_server_goes_on_up() -> None:
    client, frames = Client(), Frames(b"data: 1\r\n\r\n", 30)
    task = asyncio.create_task(
        sse.EventStream(frames(), ping_s=5)(SCOPE, client.receive, client.send)
    )
    await asyncio.sleep(0.05)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert frames.stopped_at is not None


async def test_open_streams_end_when_the_server_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    client, frames = Client(), Frames(b"data: 1\r\n\r\n", 30)
    exiting = [False]
    monkeypatch.setattr(sse, "_server_exiting", lambda: exiting[0])
    monkeypatch.setattr(sse, "_EXIT_POLL_S", 0.02)
    stream = asyncio.create_task(
        sse.EventStream(frames(), ping_s=5)(SCOPE, client.receive, client.send)
    )
    await asyncio.sleep(0.1)
    assert not stream.done()

    exiting[0] = True
    await asyncio.wait_for(stream, 1)

    assert frames.stopped_at is not None and not frames.finished
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_the_last_frame_leaves_with_the_end_in_one_message() -> None:
    """`done` (or `error`) ends the response in the same message: one write less per answer."""

    async def events() -> AsyncGenerator[dict[str, Any], None]:
        yield {"type": "chunk", "content": "Hi"}
        yield {"type": "done", "answered": False}

    client = Client()
    await sse.event_stream(events(), ping_s=5)(SCOPE, client.receive, client.send)

    bodies = [(m["body"], m["more_body"]) for m in client.sent[1:]]
    assert bodies == [
        (b'data: {"type":"chunk","content":"Hi"}\r\n\r\n', True),
        (b'data: {"type":"done","answered":false}\r\n\r\n', False),
    ]


async def test_a_frame_after_the_last_is_refused_not_sent() -> None:
    client, frames = Client(), Frames(sse.Last(b"data: end\r\n\r\n"), b"data: more\r\n\r\n")
    with pytest.raises(RuntimeError, match="after the stream's last"):
        await sse.EventStream(frames(), ping_s=5)(SCOPE, client.receive, client.send)
    assert client.body == b"data: end\r\n\r\n"
    assert [m.get("more_body") for m in client.sent[1:]] == [False]
