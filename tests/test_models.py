"""The OpenAI-compatible paths: embeddings (batching, truncation, cache, retries) and chat
(streaming, usage, citations, history, rewrite, faults), against HTTP servers on this machine."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from docent.edge import shard_dense_size
from docent.embeddings import MAX_INPUT_TOKENS
from docent.tokens import count_tokens
from tests.conftest import corpus_documents, parse_sse, running_docent
from tests.support.standins import Fault, StandIn


def with_models(tmp_path: Path, url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {"openai_base_url": url, "chat_model": "gpt-4o-mini"}
    values.update(overrides)
    return running_docent(tmp_path, **values)


def ask(client: httpx.Client, question: str, **body: Any) -> list[dict[str, Any]]:
    response = client.post("/chat", json={"question": question, **body})
    assert response.status_code == 200, response.text
    return parse_sse(response.text)


def test_ingest_batches_embeddings_and_stores_dense_vectors(
    tmp_path: Path, standin: tuple[str, StandIn]
) -> None:
    url, state = standin
    documents = corpus_documents()
    with with_models(tmp_path, url, embedding_batch_size=3) as docent:
        result = docent.ingest(documents)
        first_requests = len(state.embedding_requests)
        again = docent.ingest(documents)
    chunks = result["chunks"]
    assert chunks > 3
    sizes = [len(r) for r in state.embedding_requests]
    assert max(sizes) <= 3
    assert sum(sizes) == chunks  # every chunk embedded once; batches, not one call per chunk
    assert first_requests == -(-chunks // 3)
    assert again["unchanged"] == len(documents)
    assert len(state.embedding_requests) == first_requests  # unchanged text: no call at all
    assert shard_dense_size(str(tmp_path / "qdrant" / "docent")) == 64


def test_the_cache_makes_a_rebuilt_index_and_a_repeated_question_free(
    tmp_path: Path, standin: tuple[str, StandIn], redis_url: str
) -> None:
    url, state = standin
    shared = {"redis_url": redis_url, "key_prefix": f"cache{time.time_ns()}"}
    with with_models(tmp_path / "one", url, **shared) as docent:
        docent.ingest(corpus_documents())
    embedded = sum(len(r) for r in state.embedding_requests)
    # A new index (another store path), the same shared cache: no text is embedded again.
    with with_models(tmp_path / "two", url, **shared) as docent, docent.client() as client:
        docent.ingest(corpus_documents())
        assert sum(len(r) for r in state.embedding_requests) == embedded
        ask(client, "How do I configure rate limits?")
        ask(client, "How do I configure rate limits?")
        hits = docent.services.embedder.counters.cache_hits  # type: ignore[union-attr]
    question_calls = [
        r for r in state.embedding_requests if r == ["How do I configure rate limits?"]
    ]
    assert len(question_calls) == 1  # asked twice, embedded once
    assert hits >= embedded


def test_inputs_over_the_model_limit_are_truncated_with_tiktoken(
    tmp_path: Path, standin: tuple[str, StandIn]
) -> None:
    url, state = standin
    long_text = "# Huge\n\n" + " ".join(f"word{i}" for i in range(12_000))
    with with_models(tmp_path, url, chunk_tokens=8000) as docent:
        docent.ingest([{"id": "huge", "text": long_text, "format": "markdown"}])
    sent = [text for request in state.embedding_requests for text in request]
    assert sent
    assert all(count_tokens(t, "text-embedding-3-small") <= MAX_INPUT_TOKENS for t in sent)
    assert max(count_tokens(t, "text-embedding-3-small") for t in sent) > 4000


def test_embedding_429_then_200_is_retried_after_retry_after(
    tmp_path: Path, standin: tuple[str, StandIn]
) -> None:
    url, state = standin
    state.embedding_faults = [Fault(429, {"retry-after-ms": "300"})]
    with with_models(tmp_path, url) as docent:
        started = time.monotonic()
        result = docent.ingest([{"id": "a", "text": "# A\n\nSome text about retries."}])
        elapsed = time.monotonic() - started
    assert result["chunks"] == 1
    assert len(state.embedding_requests) == 2
    assert elapsed >= 0.3


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
def test_embeddings_down_is_a_clear_503_and_nothing_written(tmp_path: Path, transport: str) -> None:
    # aiohttp's transport reports a refused connection as a connect *timeout*: still a 503.
    with (
        socket_closed_url() as url,
        with_models(tmp_path, url, model_max_retries=0, model_http_client=transport) as docent,
        docent.admin() as admin,
    ):
        response = admin.post("/ingest", json={"documents": [{"id": "a", "text": "hello"}]})
        listed = admin.get("/documents").json()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert listed["documents"] == []


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
def test_the_answer_carries_the_sdk_clients_headers_on_either_transport(
    tmp_path: Path, standin: tuple[str, StandIn], transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through aiohttp the answer goes out without the SDK's request layers (`post_stream`), with
    # the SDK client's URL and headers: its key, and what it reads from the environment.
    url, state = standin
    state.answer = "Ten a minute [S1]."
    monkeypatch.setenv("OPENAI_ORG_ID", "org-docent")
    with with_models(tmp_path, url, openai_api_key="sk-answer", model_http_client=transport,
                     embedding_provider="none") as docent:  # fmt: skip
        docent.ingest(corpus_documents())
        with docent.client() as client:
            events = ask(client, "How are anonymous visitors limited?")
    assert events[-1]["type"] == "done", events[-1]
    headers = state.chat_headers[-1]
    assert headers["authorization"] == "Bearer sk-answer"
    assert headers["openai-organization"] == "org-docent"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("AsyncOpenAI/Python")
    # The SDK's request layers add a per-request retry count; the direct request has none.
    assert ("x-stainless-retry-count" in headers) == (transport == "httpx")


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
def test_a_model_server_that_refuses_connections_is_an_unavailable_error_event(
    tmp_path: Path, transport: str
) -> None:
    with (
        socket_closed_url() as url,
        with_models(
            tmp_path,
            url,
            model_max_retries=1,
            model_http_client=transport,
            embedding_provider="none",
        ) as docent,  # fmt: skip
    ):
        docent.ingest(corpus_documents())
        with docent.client() as client:
            events = ask(client, "How are anonymous visitors limited?")
    assert events[0]["type"] == "sources"
    assert events[-1]["type"] == "error" and events[-1]["code"] == "unavailable", events[-1]


class socket_closed_url:
    def __enter__(self) -> str:
        from tests.support.servers import free_port

        return f"http://127.0.0.1:{free_port()}/v1"

    def __exit__(self, *exc: object) -> None:
        return None


def test_streamed_answer_usage_and_citations(
    docent_models: tuple[Any, StandIn],
) -> None:
    docent, state = docent_models
    state.answer = "Use RATE_LIMIT_ANON [S1]. See also [S9] and [S2]."
    state.token_interval_s = 0.05  # tokens apart in time (those that arrive together leave so)
    with docent.client() as client:
        events = ask(client, "How are anonymous visitors limited?")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert kinds.count("chunk") > 3  # streamed, not one blob
    answer = "".join(e["content"] for e in events if e["type"] == "chunk")
    done = events[-1]
    assert "[S9]" not in answer  # a marker naming no source never reaches the client
    assert done["citations"] == ["S1", "S2"]
    assert done["usage"]["prompt_tokens"] == 42  # from the stream's usage chunk
    assert done["usage"]["embedding_tokens"] > 0
    assert done["model"] == "gpt-4o-mini"
    request = state.chat_requests[-1]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    system, user = request["messages"][0]["content"], request["messages"][-1]["content"]
    assert "[S1]" in system and "does not say" in system
    assert "[S1]" in user and "How are anonymous visitors limited?" in user


def test_usage_is_counted_with_tiktoken_when_the_server_reports_none(
    docent_models: tuple[Any, StandIn],
) -> None:
    docent, state = docent_models
    state.report_usage = False
    state.answer = "Limits are per IP [S1]."
    with docent.client() as client:
        done = ask(client, "How are anonymous visitors limited?")[-1]
    assert done["usage"]["completion_tokens"] == count_tokens("Limits are per IP [S1].")
    assert done["usage"]["prompt_tokens"] > 100


def test_history_is_kept_newest_first_within_budget_and_the_follow_up_rewritten(
    tmp_path: Path, standin: tuple[str, StandIn]
) -> None:
    url, state = standin
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "words " * 60}
        for i in range(20)
    ]
    state.answer = "rate limits for anonymous visitors"  # what the rewrite call returns
    with with_models(tmp_path, url, max_history_tokens=300) as docent:
        docent.ingest(corpus_documents())
        with docent.client() as client:
            events = ask(client, "and for them?", history=history)
    rewrite, answer = state.chat_requests[-2], state.chat_requests[-1]
    assert rewrite.get("stream") is not True
    assert "and for them?" in rewrite["messages"][-1]["content"]
    # Retrieval searched with the rewritten query, not the bare follow-up.
    assert ["rate limits for anonymous visitors"] in state.embedding_requests
    assert events[0]["sources"]
    sent = [m["content"] for m in answer["messages"][1:-1]]
    assert sent and sent[-1].startswith("turn 19")  # newest kept
    assert not any(s.startswith("turn 0 ") for s in sent)  # oldest dropped
    assert sum(count_tokens(s, "gpt-4o-mini") + 4 for s in sent) <= 300


@pytest.fixture
def docent_models(tmp_path: Path, standin: tuple[str, StandIn]) -> Any:
    url, state = standin
    with with_models(tmp_path, url, request_timeout_s=2.0) as docent:
        docent.ingest(corpus_documents())
        state.embedding_requests.clear()
        yield docent, state


def test_model_429_then_200_answers(docent_models: tuple[Any, StandIn]) -> None:
    docent, state = docent_models
    state.faults = [Fault(429, {"retry-after": "0"})]
    with docent.client() as client:
        events = ask(client, "How are anonymous visitors limited?")
    assert events[-1]["type"] == "done"
    assert len(state.chat_requests) == 2


@pytest.mark.parametrize(
    ("mode", "faults", "code"),
    [
        ("ok", [Fault(500)] * 5, "upstream_error"),
        ("ok", [Fault(429, {"retry-after": "30"})], "unavailable"),
        ("hang", [], "upstream_timeout"),
        ("drop", [], "upstream_error"),
    ],
)
def test_model_faults_end_the_stream_with_an_error_event(
    docent_models: tuple[Any, StandIn], mode: str, faults: list[Fault], code: str
) -> None:
    docent, state = docent_models
    state.mode, state.faults = mode, list(faults)
    started = time.monotonic()
    with docent.client() as client:
        events = ask(client, "How are anonymous visitors limited?")
    elapsed = time.monotonic() - started
    assert events[0]["type"] == "sources"
    assert events[-1]["type"] == "error" and events[-1]["code"] == code
    assert not any(e["type"] == "done" for e in events)
    assert elapsed < 4.0  # bounded by REQUEST_TIMEOUT_S=2 (and the Retry-After past it)
    if mode == "drop":  # three chunks arrived before the drop; the error follows them
        assert [e["type"] for e in events].count("chunk") >= 1


async def test_the_model_pool_reuses_connections_and_passes_over_ones_the_server_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pool pass polls no idle socket; the one connection handed out is probed, and a
    connection the server closed while idle is never used (no request fails, none retried)."""
    import asyncio

    import httpcore2._utils as backend

    from docent import modelclient
    from docent.config import Settings

    accepted: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.readline():
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()

    probes = [0]
    readable = backend.is_socket_readable

    def counted(sock: Any) -> bool:
        probes[0] += 1
        return readable(sock)

    monkeypatch.setattr(backend, "is_socket_readable", counted)
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = modelclient.client_for(Settings(openai_base_url=f"http://127.0.0.1:{port}/v1"))

    async def get() -> int:
        response = await client.get("/models", cast_to=httpx.Response)
        return int(response.status_code)

    assert await asyncio.gather(*[get() for _ in range(20)]) == [200] * 20
    assert len(accepted) == 20
    probes[0] = 0
    for _ in range(10):  # one at a time: each reuses an idle connection of the twenty
        assert await get() == 200
    assert len(accepted) == 20
    assert probes[0] <= 20  # the stock pool polls the idle sockets, 19 or 20, twice per request

    for writer in accepted:  # the server drops its idle connections (its keep-alive timeout)
        writer.close()
    await asyncio.sleep(0.2)
    assert await asyncio.gather(*[get() for _ in range(5)]) == [200] * 5
    assert len(accepted) == 25  # new connections; no request went out on a closed one
    server.close()


async def test_the_model_pool_reads_on_asyncio_transports_not_anyio_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The model's stream is read without anyio's cancel scope per read (its cost per token)."""
    import asyncio

    import httpcore2._backends.anyio as anyio_backend

    from docent import modelclient
    from docent.config import Settings

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an anyio stream was read")

    monkeypatch.setattr(anyio_backend.AnyIOStream, "read", refused)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for word in (b"data: one\n\n", b"data: two\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(word), word))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = modelclient.client_for(Settings(openai_base_url=f"http://127.0.0.1:{port}/v1"))
    response = await client.post("/chat/completions", cast_to=httpx.Response, body={}, stream=True)
    body = b"".join([chunk async for chunk in response.aiter_bytes()])
    await response.aclose()
    server.close()
    assert body == b"data: one\n\ndata: two\n\n"


async def test_the_direct_answer_stream_speaks_tls_with_the_sdks_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`post_stream` (aiohttp without the SDK's layers) trusts what the SDK's transport trusts:
    a server whose certificate is in `SSL_CERT_FILE` answers; without it, the certificate is
    refused and the failure is the model server being unreachable."""
    import asyncio
    import ssl

    from docent import modelclient
    from docent.config import Settings

    cert, key = _certificate(tmp_path)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            await reader.readexactly(2)  # the body: {}
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\ndata: one\n\n")
            await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the refused handshake
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ssl)
    port = server.sockets[0].getsockname()[1]
    try:
        for trusted in (True, False):
            if trusted:
                monkeypatch.setenv("SSL_CERT_FILE", str(cert))
            else:
                monkeypatch.delenv("SSL_CERT_FILE")
            settings = Settings(
                openai_base_url=f"https://127.0.0.1:{port}/v1", model_timeout_s=5 + trusted
            )  # fmt: skip  (a client each)
            if trusted:
                stream = await modelclient.post_stream(settings, "/chat/completions", {})
                body = b"".join([chunk async for chunk in stream.aiter_bytes()])
                await stream.aclose()
                assert body == b"data: one\n\n"
            else:
                with pytest.raises(Exception) as failure:
                    await modelclient.post_stream(settings, "/chat/completions", {})
                retryable, _, error = modelclient.classify(failure.value)
                assert retryable  # a later attempt may find the server fixed
                assert "certificate" in str(failure.value).lower()
                assert error.code == "unavailable"
    finally:
        await modelclient.aclose_clients()
        server.close()


def _certificate(folder: Path) -> tuple[Path, Path]:
    import subprocess

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_the_model_connections_speak_tls_time_out_and_see_a_close(tmp_path: Path) -> None:
    """The asyncio transports under the model pool: TLS started on a TCP connection (the loop's
    own), a read that waits past its timeout, and a connection the server closed."""
    import asyncio
    import ssl

    import httpcore2

    from docent import modelclient

    cert, key = _certificate(tmp_path)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)
    served: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(writer)
        line = await reader.readline()
        if line == b"ping\n":
            writer.write(b"pong\n")
            await writer.drain()

    backend = modelclient._backend()
    secure = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ssl)
    port = secure.sockets[0].getsockname()[1]
    stream = await backend.connect_tcp("127.0.0.1", port, timeout=5)
    client_ssl = ssl.create_default_context(cafile=str(cert))
    stream = await stream.start_tls(client_ssl, server_hostname="localhost", timeout=5)
    assert stream.get_extra_info("ssl_object") is not None
    await stream.write(b"ping\n", timeout=5)
    assert await stream.read(1024, timeout=5) == b"pong\n"
    await stream.aclose()
    secure.close()

    plain = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = plain.sockets[0].getsockname()[1]
    stream = await backend.connect_tcp("127.0.0.1", port, timeout=5)
    started = time.monotonic()
    with pytest.raises(httpcore2.ReadTimeout):
        await stream.read(1024, timeout=0.2)  # the server waits for a line
    assert 0.15 < time.monotonic() - started < 2
    assert stream.get_extra_info("is_readable") is False
    served[-1].close()  # the server drops the idle connection
    await asyncio.sleep(0.1)
    assert stream.get_extra_info("is_readable") is True
    assert await stream.read(1024) == b""
    await stream.aclose()
    plain.close()
    with pytest.raises(httpcore2.ConnectError):
        await backend.connect_tcp("127.0.0.1", port, timeout=5)  # nobody listens there now


def test_serve_reads_the_model_through_aiohttp_when_installed(
    tmp_path: Path, standin: tuple[str, StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docent serve` (requirements-serve.txt) streams answers through the SDK's aiohttp
    transport; without aiohttp, or with `MODEL_HTTP_CLIENT=httpx`, through httpx."""
    import importlib.util

    from docent import modelclient
    from tests.support.servers import docent_server

    url, state = standin
    state.answer = "Anonymous visitors get ten questions a minute."
    env = {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": "k", "EMBEDDING_PROVIDER": "none"}
    with docent_server(env, str(tmp_path)) as (base, process):
        with httpx.Client(base_url=base, timeout=30) as client:
            events = ask(client, "How are anonymous visitors limited?")
        maps = Path(f"/proc/{process.pid}/maps").read_text()
    assert "".join(e["content"] for e in events if e["type"] == "chunk") == state.answer
    assert "aiohttp/_http_parser" in maps  # aiohttp's C parser read the model's stream
    assert modelclient.uses_aiohttp("auto") and not modelclient.uses_aiohttp("httpx")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # not installed
    assert not modelclient.uses_aiohttp("auto")
