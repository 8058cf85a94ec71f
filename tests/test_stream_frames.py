"""`STREAM_FRAME_MS` end to end: `docent serve` in its own process, a model stand-in streaming at
a steady rate, a client over real HTTP. Tokens closer together than the interval leave in fewer
frames, the first at once, the text unchanged; a client that leaves mid-hold still stops the model.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from tests.conftest import corpus_documents, serve
from tests.support.servers import docent_server
from tests.support.standins import StandIn

ADMIN = "frames-admin"
FRAME_S = 0.3  # long enough that a held first token, or one frame per token, cannot pass
WORDS = 60
ANSWER = " ".join(f"word{i}" for i in range(WORDS)) + " [S1]."


class Timed(StandIn):
    """The stand-in, noting when it hands each stream's first token to the socket."""

    first_token_at: list[float]

    async def _stream(self, body: dict[str, Any], request: Request) -> AsyncIterator[bytes]:
        async for piece in super()._stream(body, request):
            if b'"content"' in piece and len(self.first_token_at) < len(self.chat_requests):
                self.first_token_at.append(time.monotonic())
            yield piece


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Timed]]:
    state = Timed()
    state.first_token_at = []
    with serve(state.app()) as model:
        env = {"OPENAI_BASE_URL": f"{model}/v1", "OPENAI_API_KEY": "k",
               "EMBEDDING_PROVIDER": "none", "ADMIN_API_KEYS": ADMIN,
               "RATE_LIMIT_ANON": "100000/60s", "STREAM_FRAME_MS": str(FRAME_S * 1000)}  # fmt: skip
        with docent_server(env, str(tmp_path_factory.mktemp("frames"))) as (url, _):
            response = httpx.post(f"{url}/ingest", json={"documents": corpus_documents()},
                                  headers={"X-API-Key": ADMIN}, timeout=60)  # fmt: skip
            assert response.status_code == 200, response.text
            yield url, state


def setup(state: Timed, answer: str) -> None:
    state.reset()
    state.first_token_at = []
    state.answer, state.first_token_s, state.token_interval_s = answer, 0.05, 0.01


@pytest.mark.slow
@pytest.mark.services
def test_steady_tokens_leave_in_fewer_frames_the_first_at_once_the_text_unchanged(
    served: tuple[str, Timed],
) -> None:
    url, state = served
    setup(state, ANSWER)
    events: list[tuple[float, dict[str, Any]]] = []
    with httpx.stream("POST", f"{url}/chat", json={"question": "How do I install Acme with pip?"},
                      timeout=30) as response:  # fmt: skip
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append((time.monotonic(), json.loads(line[5:])))

    kinds = [event["type"] for _, event in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and set(kinds[1:-1]) == {"chunk"}
    chunks = [(at, event["content"]) for at, event in events if event["type"] == "chunk"]
    assert "".join(text for _, text in chunks) == ANSWER
    assert events[-1][1]["citations"] == ["S1"]
    assert state.tokens_sent == WORDS + 1
    # 61 tokens 10 ms apart (600 ms or more) in frames at least 300 ms apart.
    assert len(chunks) <= 5, [text for _, text in chunks]
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(chunks)]
    # Frames leave at least the interval apart (the end alone may come sooner); the median, so
    # that a client busy for a moment, reading two frames at once, does not count.
    assert gaps and statistics.median(gaps[:-1] or gaps) >= FRAME_S - 0.05
    # The first token is not held for company: it reaches the client well within the interval.
    assert chunks[0][0] - state.first_token_at[0] < FRAME_S / 2
    assert chunks[0][1].startswith("word0")


@pytest.mark.slow
@pytest.mark.services
def test_a_client_that_leaves_while_a_frame_is_held_stops_the_model_within_a_second(
    served: tuple[str, Timed],
) -> None:
    url, state = served
    setup(state, " ".join(f"word{i}" for i in range(1000)))
    with httpx.stream("POST", f"{url}/chat", json={"question": "How do I install Acme with pip?"},
                      timeout=30) as response:  # fmt: skip
        for line in response.iter_lines():
            if '"type":"chunk"' in line:
                break  # the first chunk: the next is being held
        time.sleep(0.05)
    left = time.monotonic()
    while not state.disconnected and time.monotonic() - left < 1.0:
        time.sleep(0.01)
    assert state.disconnected, "the model kept streaming to a client that left"
    assert state.tokens_sent < 1000
