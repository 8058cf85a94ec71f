"""The model's stream, read per network read: tokens that arrive together leave as one delta, and
the text is the model's text however its bytes were cut (mid-line, mid-character, CRLF or LF)."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from docent.config import load_settings
from docent.errors import UpstreamError
from docent.generation import AnswerRequest, Usage
from docent.llm import OpenAIAnswerer
from tests.conftest import serve

TOKENS = ["Ünïcode ", "😀 ", "and ", "plain ", "words ", "[S1]", ".\n\n", "Next ", "line."]


def sse_body(tokens: list[str], newline: bytes = b"\n") -> bytes:
    base = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
        for t in tokens
    ]
    events.append({**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9}})
    lines = [b"data: " + json.dumps(e, ensure_ascii=False).encode() for e in events]
    lines += [b": a comment", b"data: [DONE]"]
    return b"".join(line + newline + newline for line in lines)


class Plan:
    """What the model server sends next: the body in these pieces, this far apart."""

    pieces: ClassVar[list[bytes]] = []
    gap_s: ClassVar[float] = 0.0
    peers: ClassVar[list[int]] = []  # the client port of each request
    gzip: ClassVar[bool] = False  # the body compressed (`Content-Encoding: gzip`), in one piece


@pytest.fixture(autouse=True, params=["httpx", "aiohttp"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test on both of the SDK's transports (`MODEL_HTTP_CLIENT`): paced the same."""
    monkeypatch.setenv("MODEL_HTTP_CLIENT", request.param)
    return str(request.param)


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    async def completions(request: Request) -> Response:
        await request.body()
        Plan.peers.append(request.client.port if request.client else 0)
        pieces, gap = list(Plan.pieces), Plan.gap_s
        if Plan.gzip:
            headers = {"content-encoding": "gzip"}
            packed = gzip.compress(b"".join(pieces))
            return Response(packed, media_type="text/event-stream", headers=headers)
        if len(pieces) == 1:  # one write: every token in one read
            return Response(pieces[0], media_type="text/event-stream")

        async def body() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece
                await asyncio.sleep(gap)

        return StreamingResponse(body(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    with serve(app) as url:
        yield f"{url}/v1"


async def deltas(model_url: str, tmp_path: Path, frame_ms: float = 40.0) -> tuple[list[str], Usage]:
    settings = load_settings(openai_base_url=model_url, openai_api_key="k",
                             qdrant_path=str(tmp_path / "q"), sample_corpus="",
                             stream_frame_ms=frame_ms)  # fmt: skip
    usage = Usage()
    stream = OpenAIAnswerer(settings).stream(
        AnswerRequest("q", (), [], usage, time.monotonic() + 20)
    )
    return [d async for d in stream], usage


async def test_tokens_that_arrive_together_leave_as_one_delta(
    model_url: str, tmp_path: Path
) -> None:
    Plan.pieces, Plan.gap_s = [sse_body(TOKENS)], 0.0
    got, usage = await deltas(model_url, tmp_path)
    assert got == ["".join(TOKENS)]
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 9)


@pytest.mark.parametrize("size", [1, 7, 64])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
async def test_bytes_cut_anywhere_give_the_same_text(
    model_url: str, tmp_path: Path, size: int, newline: bytes
) -> None:
    body = sse_body(TOKENS, newline)
    Plan.pieces = [body[i : i + size] for i in range(0, len(body), size)]
    Plan.gap_s = 0.001
    got, usage = await deltas(model_url, tmp_path)
    assert "".join(got) == "".join(TOKENS)
    assert len(got) <= len(TOKENS)
    assert usage.prompt_tokens == 7


async def test_tokens_apart_in_time_stay_apart(model_url: str, tmp_path: Path) -> None:
    body = sse_body(TOKENS[:3])
    Plan.pieces = [event + b"\n\n" for event in body.split(b"\n\n") if event]
    Plan.gap_s = 0.2  # each token its own read: streaming stays streaming
    got, _ = await deltas(model_url, tmp_path)
    assert got == TOKENS[:3]


STEADY = [f"t{i} " for i in range(40)]


async def test_steady_tokens_leave_as_one_delta_per_frame_interval(
    model_url: str, tmp_path: Path
) -> None:
    body = sse_body(STEADY)
    Plan.pieces = [event + b"\n\n" for event in body.split(b"\n\n") if event]
    Plan.gap_s = 0.01  # 40 tokens over 400 ms or more
    settings = load_settings(openai_base_url=model_url, openai_api_key="k",
                             qdrant_path=str(tmp_path / "q"), sample_corpus="",
                             stream_frame_ms=100)  # fmt: skip
    usage = Usage()
    got: list[tuple[float, str]] = []
    request = AnswerRequest("q", (), [], usage, time.monotonic() + 20)
    async for delta in OpenAIAnswerer(settings).stream(request):
        got.append((time.monotonic(), delta))
    assert "".join(delta for _, delta in got) == "".join(STEADY)
    assert got[0][1] == STEADY[0]  # the first token is not held back
    # The tokens that gathered in the socket while the reader paused come out of one read as
    # one delta: a delta per 100 ms interval, never two closer together, not 40 deltas 10 ms
    # apart (nor bursts of deltas microseconds apart).
    gaps = [round(b - a, 4) for (a, _), (b, _) in itertools.pairwise(got)]
    assert 2 <= len(got) <= 8 and min(gaps) >= 0.095, gaps
    assert usage.completion_tokens == 9  # the usage chunk after the text still counted


async def test_between_frames_aiohttp_leaves_the_tokens_in_the_socket(
    model_url: str, tmp_path: Path, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if transport != "aiohttp":
        pytest.skip("httpx's connections read only while a reader waits")
    from aiohttp.client_proto import ResponseHandler

    received: list[int] = []
    feed = ResponseHandler.data_received

    def counted(self: ResponseHandler, data: bytes) -> None:
        if data:  # b"" is aiohttp resuming its parser, not a read of the socket
            received.append(len(data))
        feed(self, data)

    monkeypatch.setattr(ResponseHandler, "data_received", counted)
    body = sse_body(STEADY)
    Plan.pieces = [event + b"\n\n" for event in body.split(b"\n\n") if event]
    Plan.gap_s = 0.01
    got, usage = await deltas(model_url, tmp_path, frame_ms=100)
    assert "".join(got) == "".join(STEADY) and usage.completion_tokens == 9
    # aiohttp reads its socket whenever data arrives, reader or not: 40-odd receives, parses
    # and read-timer resets for 40 tokens 10 ms apart. Paused while a frame is held, it takes
    # what gathered in one receive per frame (the headers' and the first token's besides).
    assert len(received) <= len(got) + 4, (len(received), len(got))


async def test_without_a_frame_interval_the_reader_does_not_pause(
    model_url: str, tmp_path: Path
) -> None:
    body = sse_body(STEADY[:10])
    Plan.pieces = [event + b"\n\n" for event in body.split(b"\n\n") if event]
    Plan.gap_s = 0.05
    got, _ = await deltas(model_url, tmp_path, frame_ms=0)
    assert got == STEADY[:10]


async def test_the_connection_goes_back_to_the_pool_after_done(
    model_url: str, tmp_path: Path
) -> None:
    body = sse_body(TOKENS)
    Plan.pieces, Plan.gap_s = [body[:40], body[40:]], 0.01  # chunked, ends after [DONE]
    Plan.peers.clear()
    for _ in range(3):
        got, _ = await deltas(model_url, tmp_path)
        assert "".join(got) == "".join(TOKENS)
    assert len(Plan.peers) == 3 and len(set(Plan.peers)) == 1  # one connection, reused


async def test_a_malformed_line_ends_the_answer_with_an_error(
    model_url: str, tmp_path: Path
) -> None:
    Plan.pieces, Plan.gap_s = [b'data: {"choices": [\n\n'], 0.0
    with pytest.raises(UpstreamError):
        await deltas(model_url, tmp_path)


async def test_a_compressed_stream_is_read_through_its_decoder(
    model_url: str, tmp_path: Path
) -> None:
    # The connection's raw body would be gzip's bytes: the reader must go through httpx's
    # decoder for it, and the text is the model's all the same.
    Plan.pieces, Plan.gap_s, Plan.gzip = [sse_body(TOKENS)], 0.0, True
    try:
        got, usage = await deltas(model_url, tmp_path)
    finally:
        Plan.gzip = False
    assert "".join(got) == "".join(TOKENS)
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 9)


def test_a_response_whose_parser_cannot_be_seen_is_not_paced() -> None:
    import httpx2

    from docent import modelclient

    # Not on one of the client's HTTP/1.1 connections: no check, so the answerer reads each
    # chunk as it comes rather than holding reads it could not gather.
    assert modelclient.buffered(httpx2.Response(200, content=b"data: [DONE]\n\n")) is None
