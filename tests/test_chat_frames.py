"""`chat.coalesced`: text that piles up while a frame is written leaves as one frame, unchanged,
in order, errors after the text before them, and a consumer that leaves stops the reader."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from docent.chat import coalesced
from docent.errors import UpstreamError

WORDS = [f"w{i} " for i in range(40)]


async def burst(words: list[str], every: int) -> AsyncIterator[str]:
    """`words`, pausing (a real await) only after each `every` of them."""
    for number, word in enumerate(words, 1):
        yield word
        if number % every == 0:
            await asyncio.sleep(0.01)


async def frames(source: AsyncIterator[str], busy_s: float = 0.0) -> list[str]:
    out = []
    async for text in coalesced(source):
        out.append(text)
        await asyncio.sleep(busy_s)  # the consumer writing its frame
    return out


async def test_words_that_arrive_together_leave_as_one_frame() -> None:
    got = await frames(burst(WORDS, every=10))
    assert "".join(got) == "".join(WORDS)
    assert len(got) == 4  # one frame per burst of ten


async def test_words_apart_in_time_leave_one_by_one() -> None:
    got = await frames(burst(WORDS[:5], every=1))
    assert got == WORDS[:5]


async def test_a_slow_consumer_gets_everything_read_meanwhile_in_order() -> None:
    got = await frames(burst(WORDS, every=1), busy_s=0.035)
    assert "".join(got) == "".join(WORDS)
    assert 1 < len(got) < len(WORDS)


async def test_an_error_comes_after_the_text_read_before_it() -> None:
    async def failing() -> AsyncIterator[str]:
        yield "partial "
        yield "answer"
        raise UpstreamError("The model server dropped the answer.")

    seen: list[str] = []
    with pytest.raises(UpstreamError):
        async for text in coalesced(failing()):
            seen.append(text)
    assert "".join(seen) == "partial answer"


async def test_a_consumer_that_leaves_stops_the_reader_at_once() -> None:
    stopped = asyncio.Event()
    produced = 0

    async def endless() -> AsyncIterator[str]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield "x"
                await asyncio.sleep(0.005)
        finally:
            stopped.set()

    stream = coalesced(endless())
    async for _ in stream:
        if produced >= 3:
            break
    await stream.aclose()
    await asyncio.wait_for(stopped.wait(), 1.0)
    at_stop = produced
    await asyncio.sleep(0.05)
    assert produced == at_stop  # nothing more read (or paid for) after that


async def paced(words: list[str], gap_s: float) -> AsyncIterator[str]:
    """`words`, `gap_s` apart (a model streaming at a steady rate)."""
    for word in words:
        yield word
        await asyncio.sleep(gap_s)


async def timed_frames(source: AsyncIterator[str], frame_s: float) -> list[tuple[float, str]]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    return [(loop.time() - started, text) async for text in coalesced(source, frame_s)]


async def test_a_frame_interval_gathers_steady_tokens_and_sends_the_first_at_once() -> None:
    got = await timed_frames(paced(WORDS[:20], 0.01), frame_s=0.05)
    assert "".join(text for _, text in got) == "".join(WORDS[:20])
    assert got[0] == (pytest.approx(0, abs=0.02), WORDS[0])  # not held for company
    assert len(got) <= 8  # about 200 ms of tokens in frames at least 50 ms apart
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(got)]
    assert min(gaps[:-1]) >= 0.045  # the last frame (the end) may come sooner


async def test_without_a_frame_interval_steady_tokens_leave_one_by_one() -> None:
    got = await timed_frames(paced(WORDS[:10], 0.01), frame_s=0.0)
    assert [text for _, text in got] == WORDS[:10]


async def test_text_after_a_pause_longer_than_the_interval_leaves_at_once() -> None:
    async def two_bursts() -> AsyncIterator[str]:
        yield "first "
        await asyncio.sleep(0.2)
        yield "second"

    got = await timed_frames(two_bursts(), frame_s=0.05)
    assert [text for _, text in got] == ["first ", "second"]
    assert got[1][0] == pytest.approx(0.2, abs=0.04)  # not 0.2 + the interval


async def test_the_end_is_not_held_and_an_error_keeps_the_text_before_it() -> None:
    async def failing() -> AsyncIterator[str]:
        yield "partial "
        await asyncio.sleep(0.005)
        yield "answer"
        raise UpstreamError("The model server dropped the answer.")

    loop = asyncio.get_running_loop()
    started = loop.time()
    seen: list[str] = []
    with pytest.raises(UpstreamError):
        async for text in coalesced(failing(), frame_s=0.5):
            seen.append(text)
    assert seen == ["partial ", "answer"]
    assert loop.time() - started < 0.25  # the error cut the 500 ms hold short


async def test_a_consumer_that_leaves_while_a_frame_is_held_stops_the_reader() -> None:
    stopped = asyncio.Event()

    async def endless() -> AsyncIterator[str]:
        try:
            while True:
                yield "x"
                await asyncio.sleep(0.005)
        finally:
            stopped.set()

    stream = coalesced(endless(), frame_s=10.0)
    assert await anext(stream) == "x"
    pending = asyncio.ensure_future(anext(stream))  # held: the next frame is 10 s away
    await asyncio.sleep(0.05)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await stream.aclose()
    await asyncio.wait_for(stopped.wait(), 1.0)
