"""`sources` is on the client's socket before the model call reaches the model, even under load.

`docent serve` runs in its own process against a model stand-in in this one. When a tagged chat
request arrives at the stand-in, it peeks (without reading) at the receive buffer of the client
socket that asked Docent the question: the complete `sources` frame must already be there.
Loopback delivers a send into the peer's buffer before `send` returns, so this is an ordering
of bytes, not a race of clocks. Meanwhile other streams keep Docent's CPU busy.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from tests.conftest import corpus_documents, serve
from tests.support.servers import docent_server
from tests.support.standins import StandIn

ADMIN = "sources-first-admin"
PROBES = 4


class Peeking(StandIn):
    """The stand-in, looking into a client's socket when that client's model call arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.clients: dict[str, socket.socket] = {}
        self.seen: dict[str, tuple[float, bytes]] = {}

    async def chat(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = await request.json()
        question = body["messages"][-1]["content"]
        for tag, sock in list(self.clients.items()):
            if question.endswith(f"(probe {tag})"):
                try:
                    waiting = sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except BlockingIOError:
                    waiting = b""
                self.seen[tag] = (arrived, waiting)
        return await super().chat(request)  # the body is cached: read again as it was


def raw_chat(url: str, question: str) -> socket.socket:
    """A client that sends `POST /chat` and reads nothing yet."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"question": question}).encode()
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(
        b"POST /chat HTTP/1.1\r\nHost: docent\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


@pytest.fixture
def model() -> Iterator[tuple[str, Peeking]]:
    state = Peeking()
    state.answer = " ".join(f"word{i}" for i in range(300)) + " [S1]"
    with serve(state.app()) as url:
        yield f"{url}/v1", state


@pytest.mark.slow
@pytest.mark.services
def test_sources_reach_the_client_before_the_model_call_reaches_the_model(
    tmp_path: Path, model: tuple[str, Peeking]
) -> None:
    url, state = model
    env = {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "k", "EMBEDDING_PROVIDER": "none",
           "ADMIN_API_KEYS": ADMIN, "RATE_LIMIT_ANON": "100000/60s"}  # fmt: skip
    with docent_server(env, str(tmp_path)) as (docent, _):
        with httpx.Client(base_url=docent, timeout=60) as admin:
            response = admin.post("/ingest", json={"documents": corpus_documents()},
                                  headers={"X-API-Key": ADMIN})  # fmt: skip
            assert response.status_code == 200, response.text

        # Load: streams of 300 tokens sent back to back keep Docent's event loop busy.
        stop = threading.Event()
        loaded: list[int] = []

        def load() -> None:
            with httpx.Client(base_url=docent, timeout=60) as client:
                while not stop.is_set():
                    r = client.post("/chat", json={"question": "How do I install Acme with pip?"})
                    loaded.append(r.text.count('"type":"chunk"'))

        workers = [threading.Thread(target=load) for _ in range(8)]
        for worker in workers:
            worker.start()
        try:
            time.sleep(1.0)
            bodies: dict[str, bytes] = {}
            for number in range(PROBES):
                tag = str(number)
                sock = raw_chat(docent, f"How do I install Acme with pip? (probe {tag})")
                state.clients[tag] = sock  # registered before the model call can arrive
                deadline = time.monotonic() + 30
                while tag not in state.seen and time.monotonic() < deadline:
                    time.sleep(0.005)  # not reading: the stand-in looks at what is waiting
                bodies[tag] = read_all(sock)
        finally:
            stop.set()
            for worker in workers:
                worker.join(60)

    assert loaded and min(loaded) > 0  # the load really streamed
    for tag, body in bodies.items():
        _, waiting = state.seen[tag]  # the probe's model call did arrive
        assert b" 200 OK" in waiting.split(b"\r\n", 1)[0], waiting[:200]
        stream = waiting.partition(b"\r\n\r\n")[2]
        assert b'"type":"sources"' in stream, (tag, waiting[:400])
        assert b'"type":"chunk"' not in stream  # nothing of the answer yet: it was not asked for
        events = [json.loads(line[5:]) for line in body.split(b"\r\n") if line.startswith(b"data:")]
        assert events[0]["type"] == "sources" and events[-1]["type"] == "done", events[-1]
        assert events[0]["sources"], "the probe question matches the corpus"
