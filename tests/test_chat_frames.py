"""`chat.coalesced`: text that piles up while a frame is written leaves as one frame, unchanged,
in order, errors after the text before them, and a consumer that leaves stops the reader."""

from __future__ import annotations

import asyncio
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
