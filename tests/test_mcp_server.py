"""`/mcp` driven by the `mcp` SDK's own client over streamable HTTP.

Against `docent serve` and against the chat Lambda handler fed API Gateway v2 events: the tools
are listed and each is called; a wrong key, a missing key over its limit, an over-long question
and the vector store down each give MCP's own error form (a JSON-RPC error for a refused key,
a tool error with a clear message for the rest).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from tests.conftest import ADMIN_KEY, USER_KEY
from tests.support.protocols import LIMIT, WINDOW_S, LambdaEndpoint

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {"search_docs", "ask_docs", "list_documents"}


@asynccontextmanager
async def connect(url: str, mode: str = "auto", **headers: str) -> AsyncIterator[Client]:
    """The SDK's client; `mode="legacy"` speaks the initialize handshake of the 2025 protocol
    revisions (what most agents speak today), "auto" the newest the server offers."""
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def bearer(key: str = USER_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def text_of(result: CallToolResult) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def call(url: str, tool: str, arguments: dict[str, Any], **headers: str) -> CallToolResult:
    async with connect(url, **headers) as client:
        return await client.call_tool(tool, arguments)


async def refusal(url: str, **headers: str) -> MCPError:
    """The error a client gets when the server refuses it (raised through the SDK's task group,
    so it may arrive wrapped in an exception group)."""
    try:
        await call(url, "list_documents", {}, **headers)
    except BaseException as exc:
        found: list[MCPError] = []

        def collect(error: BaseException) -> None:
            if isinstance(error, MCPError):
                found.append(error)
            for inner in getattr(error, "exceptions", ()):
                collect(inner)

        collect(exc)
        if found:
            return found[0]
        raise
    pytest.fail("the server did not refuse the client")


async def check_every_tool(url: str, mode: str = "auto", **headers: str) -> None:
    """List the tools and call each: what an agent does first."""
    async with connect(url, mode, **headers) as client:
        listed = (await client.list_tools()).tools
        assert {t.name for t in listed} == TOOLS
        for tool in listed:
            assert tool.description and len(tool.description) > 80, tool.name
            assert tool.annotations is not None and tool.annotations.read_only_hint is True
            assert tool.output_schema is not None

        found = await client.call_tool("search_docs", {"query": "install with pip", "top_k": 2})
        assert not found.is_error, text_of(found)
        sections = (found.structured_content or {})["sections"]
        assert 1 <= len(sections) <= 2
        first = sections[0]
        assert first["document_id"] == "install.md" and first["heading"] == "Install with pip"
        assert first["url"] == "https://docs.acme.test/install#install-with-pip"
        assert "pip install acme-server" in first["text"]
        assert first["url"] in text_of(found) and "pip install acme-server" in text_of(found)

        answered = await client.call_tool("ask_docs", {"question": "How do I install Acme?"})
        assert not answered.is_error, text_of(answered)
        answer = answered.structured_content or {}
        assert answer["answered"] is True and answer["citations"]
        sources = {s["id"]: s for s in answer["sources"]}
        assert set(answer["citations"]) <= set(sources)
        assert set(re.findall(r"\[(S\d+)\]", answer["answer"])) == set(answer["citations"])
        assert "pip install acme-server" in text_of(answered)
        assert sources[answer["citations"][0]]["url"] in text_of(answered)  # the Sources list

        listing = await client.call_tool("list_documents", {})
        assert not listing.is_error, text_of(listing)
        documents = (listing.structured_content or {})["documents"]
        assert {d["id"] for d in documents} == {"install.md", "limits.md", "billing.md"}
        assert listing.structured_content and listing.structured_content["complete"] is True
        assert "https://docs.acme.test/billing" in text_of(listing)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_tools_are_listed_and_each_answers(protocol_docent: str, mode: str) -> None:
    await check_every_tool(protocol_docent, mode, **bearer())


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_chat_lambda_serves_the_same_tools(lambda_url: LambdaEndpoint, mode: str) -> None:
    await check_every_tool(lambda_url.url, mode, **bearer())
    assert lambda_url.shim.invocations >= 5  # discovery, tools/list, three calls


async def test_a_wrong_key_is_refused_on_the_lambda_too(lambda_url: LambdaEndpoint) -> None:
    error = await refusal(lambda_url.url, **bearer("not-a-key"))
    assert error.message == "A valid API key is required."


async def test_search_docs_honours_the_filter(protocol_docent: str) -> None:
    result = await call(
        protocol_docent,
        "search_docs",
        {"query": "limits install billing", "filter": {"document_id": "limits.md"}},
        **bearer(),
    )
    sections = (result.structured_content or {})["sections"]
    assert sections and {s["document_id"] for s in sections} == {"limits.md"}


async def test_search_docs_shows_sources_as_plain_text(protocol_docent: str) -> None:
    hostile = {
        "id": "hostile-mcp.md",
        "title": "<img src=x onerror=alert(1)>Zanzibar quotas",
        "url": "javascript:alert(1)",
        "text": "# <b onmouseover=alert(2)>Zanzibar</b>\n\nZanzibar quotas reset hourly.",
    }
    admin = {"X-API-Key": ADMIN_KEY}
    assert httpx.post(f"{protocol_docent}/ingest", json={"documents": [hostile]}, headers=admin)
    try:
        result = await call(
            protocol_docent, "search_docs", {"query": "zanzibar quotas"}, **bearer()
        )
    finally:
        httpx.delete(f"{protocol_docent}/documents/hostile-mcp.md", headers=admin)
    sections = (result.structured_content or {})["sections"]
    found = [s for s in sections if s["document_id"] == "hostile-mcp.md"]
    assert found and found[0]["title"] == "Zanzibar quotas" and found[0]["url"] is None
    shown = json.dumps(sections) + text_of(result)
    assert "<img" not in shown and "onerror" not in shown and "onmouseover" not in shown


async def test_ask_docs_follows_up_with_history(protocol_docent: str) -> None:
    history = [
        {"role": "user", "content": "How do I install Acme with pip?"},
        {"role": "assistant", "content": "Run pip install acme-server [S1]."},
    ]
    result = await call(
        protocol_docent,
        "ask_docs",
        {"question": "And how do I upgrade it?", "history": history},
        **bearer(),
    )
    assert "pip install --upgrade acme-server" in text_of(result)
    answer = result.structured_content or {}
    by_id = {s["id"]: s for s in answer["sources"]}
    assert any(by_id[c]["heading"] == "Upgrading" for c in answer["citations"])


async def test_list_documents_narrows_by_prefix(protocol_docent: str) -> None:
    result = await call(protocol_docent, "list_documents", {"prefix": "lim"}, **bearer())
    assert [d["id"] for d in (result.structured_content or {})["documents"]] == ["limits.md"]
    empty = await call(protocol_docent, "list_documents", {"prefix": "nothing/"}, **bearer())
    assert not empty.is_error and "No documents" in text_of(empty)


async def test_x_api_key_is_accepted(protocol_docent: str) -> None:
    result = await call(protocol_docent, "list_documents", {}, **{"X-API-Key": USER_KEY})
    assert not result.is_error


async def test_a_wrong_key_is_a_json_rpc_error_before_any_tool(protocol_docent: str) -> None:
    error = await refusal(protocol_docent, **bearer("not-a-key"))
    assert error.message == "A valid API key is required."
    # On the wire: 401 with the spec's challenge, and nothing that names the key.
    response = httpx.post(
        f"{protocol_docent}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**bearer("not-a-key"), "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "not-a-key" not in response.text


async def test_a_missing_key_is_the_anonymous_tier_and_its_limit(limited_docent: str) -> None:
    async with connect(limited_docent) as client:
        for _ in range(LIMIT):
            result = await client.call_tool("search_docs", {"query": "rate limit"})
            assert not result.is_error, text_of(result)
        refused = await client.call_tool("search_docs", {"query": "rate limit"})
    assert refused.is_error
    assert re.search(
        rf"Rate limit of {LIMIT} requests per {WINDOW_S}s exceeded; retry in \d+s\.",
        text_of(refused),
    )


async def test_a_keyed_caller_over_the_limit_gets_a_tool_error(limited_docent: str) -> None:
    headers = bearer("mcp-limited-key")
    async with connect(limited_docent, **headers) as client:
        results = [
            await client.call_tool("ask_docs", {"question": "What is the rate limit?"})
            for _ in range(LIMIT + 1)
        ]
    assert [r.is_error for r in results] == [False] * LIMIT + [True]
    assert "Rate limit" in text_of(results[-1])


async def test_an_over_long_question_is_a_tool_error(protocol_docent: str) -> None:
    for tool, argument in (("ask_docs", "question"), ("search_docs", "query")):
        result = await call(protocol_docent, tool, {argument: "x" * 2001}, **bearer())
        assert result.is_error
        assert f"The {argument} is 2001 characters; the limit is 2000" in text_of(result)
        assert "Traceback" not in text_of(result)


async def test_invalid_arguments_are_a_tool_error(protocol_docent: str) -> None:
    result = await call(protocol_docent, "search_docs", {"query": "pip", "top_k": 99}, **bearer())
    assert result.is_error and "top_k" in text_of(result)


async def test_a_store_outage_is_a_tool_error_with_a_clear_message(down_docent: str) -> None:
    for tool, arguments in (
        ("search_docs", {"query": "install"}),
        ("ask_docs", {"question": "How do I install Acme?"}),
        ("list_documents", {}),
    ):
        result = await call(down_docent, tool, arguments, **bearer())
        assert result.is_error, tool
        message = text_of(result)
        assert "The vector store is un" in message, message
        assert "127.0.0.1" not in message and "Traceback" not in message


async def test_a_browser_origin_that_is_not_allowed_is_refused(protocol_docent: str) -> None:
    error = await refusal(protocol_docent, Origin="https://evil.example")
    assert error.message == "This origin may not use the MCP server."


def test_mcp_is_in_the_openapi_document(protocol_docent: str) -> None:
    paths = httpx.get(f"{protocol_docent}/openapi.json").json()["paths"]
    assert "post" in paths["/mcp"]
    assert "search_docs" in paths["/mcp"]["post"]["description"]


def test_the_mcp_sdk_is_not_imported_by_the_apps_or_health(tmp_path: Path) -> None:
    """Half a second of imports, paid by the first /mcp request, not by /health or a cold start."""
    code = (
        "import json, sys, functions.bundle, functions.chat.app\n"
        "from starlette.testclient import TestClient\n"
        "assert TestClient(functions.bundle.app).get('/health').status_code == 200\n"
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types')]))\n"
    )
    env = {**os.environ, "SAMPLE_CORPUS": "", "QDRANT_PATH": str(tmp_path / "qdrant")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    assert json.loads(out.stdout.splitlines()[-1]) == []


async def test_protocol_requests_are_logged_and_counted_like_chat(protocol_docent: str) -> None:
    import openai

    from tests.conftest import ADMIN_KEY

    await call(protocol_docent, "ask_docs", {"question": "How do I install Acme?"}, **bearer())
    openai.OpenAI(base_url=f"{protocol_docent}/v1", api_key=USER_KEY).chat.completions.create(
        model="docent", messages=[{"role": "user", "content": "How do I upgrade Acme?"}]
    )
    metrics = httpx.get(f"{protocol_docent}/metrics", headers={"X-API-Key": ADMIN_KEY}).text
    for route in ("/mcp", "/v1/chat/completions"):
        assert re.search(rf'docent_requests_total\{{route="{route}",status="200"\}} [1-9]', metrics)
    # Both answers went through the chat pipeline's stream accounting.
    streams = re.search(r"docent_stream_seconds_count ([0-9.]+)", metrics)
    assert streams and float(streams[1]) >= 2


async def test_a_question_the_docs_do_not_answer_is_not_answered(protocol_docent: str) -> None:
    result = await call(
        protocol_docent, "ask_docs", {"question": "Who painted the Mona Lisa?"}, **bearer()
    )
    assert not result.is_error
    answer = result.structured_content or {}
    assert answer["answered"] is False and answer["citations"] == []
    assert "Sources:" not in text_of(result)


async def test_chat_mcp_and_openai_share_one_window(limited_docent: str) -> None:
    import openai

    key = "shared-limited-key"
    chat = httpx.post(
        f"{limited_docent}/chat",
        json={"question": "What is the rate limit?"},
        headers={"X-API-Key": key, "Accept": "application/json"},
    )
    assert chat.status_code == 200
    tool = await call(limited_docent, "search_docs", {"query": "rate limit"}, **bearer(key))
    assert not tool.is_error
    completions = openai.OpenAI(base_url=f"{limited_docent}/v1", api_key=key, max_retries=0)
    completions.chat.completions.create(
        model="docent", messages=[{"role": "user", "content": "What is the rate limit?"}]
    )
    # Three requests through three doors used the key's whole window of three.
    refused = await call(limited_docent, "search_docs", {"query": "rate limit"}, **bearer(key))
    assert refused.is_error and "Rate limit" in text_of(refused)
    with pytest.raises(openai.RateLimitError):
        completions.chat.completions.create(
            model="docent", messages=[{"role": "user", "content": "Again?"}]
        )
    again = httpx.post(
        f"{limited_docent}/chat", json={"question": "Again?"}, headers={"X-API-Key": key}
    )
    assert again.status_code == 429
