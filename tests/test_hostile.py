"""Hostile input and abuse, as an outside tester tried them: each attack made with real requests
against the real app (in-process uvicorn) or `docent serve` in its own process."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    ADMIN_KEY,
    USER_KEY,
    Docent,
    corpus_documents,
    parse_sse,
    running_docent,
)
from tests.support.servers import background_process, docent_server, free_port
from tests.support.standins import StandIn
from tests.support.windows import clear_of_window_roll
from tests.test_web import error_of

ROOT = Path(__file__).resolve().parent.parent


def vm(pid: int, field: str) -> float:
    """A /proc/<pid>/status memory figure (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


# 6. X-Forwarded-For over several header lines --------------------------------------------------


def test_forwarded_for_lines_are_combined_in_order_before_counting_hops(tmp_path: Path) -> None:
    """A client's own X-Forwarded-For line comes first; the proxy's appended line decides."""

    def hit(client: httpx.Client, spoofed: str, **headers: str) -> int:
        lines = [("X-Forwarded-For", spoofed), ("X-Forwarded-For", "1.1.1.1")]
        response = client.post("/chat", json={"question": "q"}, headers=[*lines, *headers.items()])
        return response.status_code

    clear_of_window_roll(3600)
    with (
        running_docent(
            tmp_path, rate_limit_anon="1/3600s", rate_limit_bad_key="2/3600s", trusted_proxy_hops=1
        ) as docent,
        docent.client() as client,
    ):
        anonymous = [hit(client, f"9.9.9.{n}") for n in range(3)]
        bad_keys = [hit(client, f"8.8.8.{n}", **{"X-API-Key": f"guess-{n}"}) for n in range(4)]

    # Every request is 1.1.1.1's, whatever the client put in its own line.
    assert anonymous == [200, 429, 429]
    assert bad_keys == [401, 401, 429, 429]


# 7. Admin routes: key and limit before the body ------------------------------------------------


@pytest.mark.slow
def test_anonymous_10_mb_ingest_bodies_are_refused_unread(tmp_path: Path) -> None:
    """Eight concurrent anonymous 10 MB bodies: 401 each, and the server does not buffer them."""
    body = b'{"documents": [{"id": "x", "text": "' + b"a" * (10 * 1024 * 1024 - 64) + b'"}]}'
    env = {"ADMIN_API_KEYS": ADMIN_KEY, "API_KEYS": USER_KEY}

    def post(url: str, headers: dict[str, str], timeout: float = 30) -> int | str:
        try:
            response = httpx.post(
                f"{url}/ingest",
                content=body,
                headers={"content-type": "application/json", **headers},
                timeout=timeout,
            )
        except httpx.TransportError as exc:  # refused mid-upload: the server stopped reading
            return type(exc).__name__
        return response.status_code

    with docent_server(env, str(tmp_path)) as (url, process):
        before = vm(process.pid, "VmRSS")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            anonymous = list(pool.map(lambda _: post(url, {}), range(8)))
            user = list(pool.map(lambda _: post(url, {"X-API-Key": USER_KEY}), range(8)))
            health = httpx.get(f"{url}/health", timeout=5)
        peak = vm(process.pid, "VmHWM")
        # Chunked, embedded and written, a 10 MB document takes seconds of CPU (11 s here: 3,745
        # chunks), more on a busy machine: the bound is generous, the point is that it goes in.
        admin = post(url, {"X-API-Key": ADMIN_KEY}, timeout=300)
        assert process.poll() is None

    print(f"RSS before {before:.0f} MB, peak during 16 refused 10 MB bodies {peak:.0f} MB")
    assert set(anonymous) <= {401, "WriteError", "RemoteProtocolError", "ReadError"}
    assert 401 in anonymous
    assert set(user) <= {403, "WriteError", "RemoteProtocolError", "ReadError"}
    assert 403 in user
    assert health.status_code == 200
    # Read and parsed, 16 such bodies cost the server hundreds of MB (226 to 530 MB for 8).
    assert peak - before < 40
    assert admin == 200  # the admin's own 10 MB document still goes in


def test_admin_routes_check_the_key_before_parsing_the_body(docent: Docent) -> None:
    """Invalid JSON tells an anonymous caller nothing: the key is checked first."""
    bad = b'{"documents": [ not json'
    headers = {"content-type": "application/json"}
    with docent.client() as client:
        anonymous = client.post("/ingest", content=bad, headers=headers)
        user = client.post("/ingest", content=bad, headers={**headers, "X-API-Key": USER_KEY})
        admin = client.post("/ingest", content=bad, headers={**headers, "X-API-Key": ADMIN_KEY})
    assert (anonymous.status_code, user.status_code, admin.status_code) == (401, 403, 400)
    assert error_of(admin)["code"] == "bad_request"


def test_the_ingest_limit_is_checked_before_the_body(tmp_path: Path) -> None:
    clear_of_window_roll(3600)
    with running_docent(tmp_path, rate_limit_key="1/3600s") as docent, docent.admin() as client:
        first = client.post("/ingest", json={"documents": [{"id": "a", "text": "alpha"}]})
        second = client.post(
            "/ingest", content=b"{ not json", headers={"content-type": "application/json"}
        )
    assert first.status_code == 200
    assert second.status_code == 429  # not 400: the body was never read
    assert error_of(second)["code"] == "rate_limited"


# 8. YAML front matter ------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    ["---", "title: Laughs", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join([f'*{chr(97 + n)}'] * 9)}]" for n in range(8)]
    + ["tags: *i", "---", "# Laughs", "", "Text."]
)


@pytest.mark.parametrize(
    ("front_matter", "message"),
    [
        (ALIAS_BOMB, "expands to more than 1000 values"),
        ("---\ntitle: Big\nnote: " + "x" * 20_000 + "\n---\n# Big\n\nText.", "larger than"),
        (
            "---\ntags: [" + ", ".join(f"t{n}" for n in range(51)) + "]\n---\nText.",
            "more than 50 tags",
        ),
        ("---\ntags: [" + "y" * 101 + "]\n---\nText.", "longer than 100 characters"),
        ("---\ntags: [[nested, list]]\n---\nText.", "a list of words"),
        ("---\nsummary: " + "z" * 3000 + "\n---\nText.", "longer than 2048"),
    ],
    ids=["aliases", "size", "tag-count", "tag-length", "tag-list", "value-length"],
)
def test_front_matter_over_its_caps_refuses_the_document_by_name(
    docent: Docent, front_matter: str, message: str
) -> None:
    started = time.monotonic()
    with docent.admin() as client:
        response = client.post(
            "/ingest",
            json={"documents": [{"id": "ok.md", "text": "# Fine\n\nKept."},
                                {"id": "laughs.md", "text": front_matter}]},
        )  # fmt: skip
        listed = client.get("/documents").json()["documents"]
    elapsed = time.monotonic() - started

    assert len(ALIAS_BOMB.encode()) < 2048  # a 2 kB request: its tags expand to 9**9 strings
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "invalid_document"
    assert "'laughs.md'" in error["message"] and message in error["message"]
    assert listed == []  # the good document in the same request is not written either
    assert elapsed < 10
    with httpx.Client(base_url=docent.url) as client:
        assert client.get("/health").status_code == 200


@pytest.mark.slow
def test_the_alias_bomb_costs_docent_serve_no_memory(tmp_path: Path) -> None:
    """The 1.7 kB request that grew the server to 946 MB and `GET /documents` to 34 MB."""
    admin = {"X-API-Key": ADMIN_KEY}
    body = {"documents": [{"id": "laughs.md", "text": ALIAS_BOMB}]}
    warm_up = {"documents": [{"id": "warm.md", "text": "---\ntitle: Warm\n---\n# Warm\n\nUp."}]}
    with docent_server({"ADMIN_API_KEYS": ADMIN_KEY}, str(tmp_path)) as (url, process):
        # The first ingest loads the parsers and the tokenizer: the baseline comes after it.
        assert httpx.post(f"{url}/ingest", json=warm_up, headers=admin, timeout=60).is_success
        assert httpx.delete(f"{url}/documents/warm.md", headers=admin, timeout=60).is_success
        before = vm(process.pid, "VmHWM")
        response = httpx.post(f"{url}/ingest", json=body, headers=admin, timeout=60)
        listing = httpx.get(f"{url}/documents", headers=admin, timeout=60)
        peak = vm(process.pid, "VmHWM")
        assert process.poll() is None

    print(f"alias bomb: peak RSS {before:.1f} then {peak:.1f} MB; listing {len(listing.content)} B")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_document"
    assert listing.json()["documents"] == [] and len(listing.content) < 1024
    assert peak - before < 10


def test_front_matter_within_the_caps_still_gives_title_url_and_tags(docent: Docent) -> None:
    text = (
        "---\ntitle: Limits\nurl: https://docs.example.com/limits\n"
        "base: &base api\ntags: [limits, *base]\n---\n# Limits\n\nTen a minute."
    )
    docent.ingest([{"id": "limits.md", "text": text}])
    with docent.admin() as client:
        (listed,) = client.get("/documents").json()["documents"]
    assert listed["title"] == "Limits"
    assert listed["url"] == "https://docs.example.com/limits"
    assert listed["tags"] == ["api", "limits"]


# 9. PDF CPU bomb ---------------------------------------------------------------------------


def pdf_cpu_bomb(pages: int, stream_mb: int) -> bytes:
    """A small PDF whose pages share one large content stream holding no text.

    The stream starts with an empty text object, so a reader cannot skip it as textless, and
    every page parses all of it again.
    """
    import io
    import zlib

    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, StreamObject

    writer = PdfWriter()
    ops = b"BT ET\n" + b"0 0 m 1 1 l S\n" * (stream_mb * 1024 * 1024 // 14)
    stream = StreamObject()
    stream._data = zlib.compress(ops, 9)
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    contents = writer._add_object(stream)
    font = DictionaryObject(
        {NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
         NameObject("/BaseFont"): NameObject("/Helvetica")}
    )  # fmt: skip
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    resources = writer._add_object(DictionaryObject({NameObject("/Font"): fonts}))
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = contents
        page[NameObject("/Resources")] = resources
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.slow
def test_a_pdf_cpu_bomb_is_refused_by_name_within_its_time_budget(tmp_path: Path) -> None:
    """`docent ingest` of a 0.3 MB PDF whose 2000 pages each cost ~0.1 s (over 3 minutes)."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "bomb.pdf").write_bytes(pdf_cpu_bomb(2000, 30))
    (folder / "fine.md").write_text("# Fine\n\nText.")
    size_kb = (folder / "bomb.pdf").stat().st_size / 1024
    env = {
        **os.environ,
        "PARSE_TIMEOUT_S": "2",
        "QDRANT_PATH": str(tmp_path / "qdrant"),
        "DOCENT_URL": f"http://127.0.0.1:{free_port()}",  # no server: the CLI reads itself
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "docent.cli", "ingest", str(folder)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - started

    print(f"{size_kb:.0f} kB PDF refused after {elapsed:.1f} s (budget 2 s)")
    assert size_kb < 512
    assert result.returncode == 1
    assert "bomb.pdf: reading the PDF took over 2 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 60  # unbounded: 2000 pages at ~0.1 s each


def test_the_parse_budget_stops_between_pages() -> None:
    from docent.errors import DocumentError
    from docent.parsing import extract

    bomb = pdf_cpu_bomb(50, 8)
    with pytest.raises(DocumentError, match=r"bomb\.pdf: reading the PDF took over 0\.01 s"):
        extract(bomb, "bomb.pdf", timeout_s=0.01)


# 10. Deeply nested HTML ----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [5_000, 50_000])
@pytest.mark.parametrize("tag", ["div", "span"])
def test_deep_html_is_a_400_naming_the_document(docent: Docent, depth: int, tag: str) -> None:
    html = f"<html><body>{f'<{tag}>' * depth}deep{f'</{tag}>' * depth}</body></html>"
    started = time.monotonic()
    with docent.admin() as client:
        response = client.post(
            "/ingest", json={"documents": [{"id": "deep.html", "text": html, "format": "html"}]}
        )
        listed = client.get("/documents").json()["documents"]
    elapsed = time.monotonic() - started

    print(f"{depth} nested <{tag}>: {response.status_code} in {elapsed * 1000:.0f} ms")
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "invalid_document"
    assert error["message"] == "Document 'deep.html': HTML elements nested more than 256 deep."
    assert listed == []
    assert elapsed < 10  # 50,000 <div> took 27.8 s (in the HTML parser alone: 18 s)


def test_html_nested_within_the_cap_is_read(docent: Docent) -> None:
    rows = "".join(f"<p>para {n}<li>item {n}" for n in range(2000))  # unclosed: siblings
    html = f"<html><body>{'<div>' * 200}<h2 id='deep'>Deep</h2>{rows}{'</div>' * 200}</body></html>"
    result = docent.ingest([{"id": "ok.html", "text": html, "format": "html"}])
    assert result["chunks"] >= 1


# 11. Long answers sent back as history -------------------------------------------------------


def test_the_server_takes_its_own_long_answers_back_as_history(
    tmp_path: Path, standin: tuple[str, StandIn]
) -> None:
    url, state = standin
    state.answer = "Limits apply per key and per address [S1]. " * 220  # 9,460 characters
    with (
        running_docent(
            tmp_path, openai_base_url=url, openai_api_key="test", embedding_provider="none"
        ) as docent,
        docent.client(headers={"Accept": "application/json"}) as client,
    ):
        docent.ingest(corpus_documents())
        first = client.post("/chat", json={"question": "How do rate limits work?"})
        answer = first.json()["answer"]
        history = [
            {"role": "user", "content": "How do rate limits work?"},
            {"role": "assistant", "content": answer},
        ]
        follow_up = client.post("/chat", json={"question": "And keys?", "history": history})
        too_long_question = client.post(
            "/chat",
            json={"question": "q", "history": [{"role": "user", "content": "u" * 8001}]},
        )

    assert first.status_code == 200 and len(answer) > 8000
    assert follow_up.status_code == 200, follow_up.text
    assert too_long_question.status_code == 422
    assert "history.0" in error_of(too_long_question)["message"]


# 13. Sources: plain titles and headings, http(s) urls, snippets without images ----------------

HOSTILE_DOCUMENTS = [
    {
        "id": "evil.md",
        "title": "<img src=x onerror=alert(1)>Billing &amp; invoices",
        "url": "javascript:alert(document.cookie)",
        "text": "# Billing\n\n## <b onmouseover=alert(2)>Invoices</b>\n\n"
        "Invoices are emailed monthly ![tracker](https://evil.example/pixel.png)"
        " to the billing contact."
        ' <img src="https://evil.example/x.png"> Invoices list every charge.',
    },
    {
        "id": "data.md",
        "title": "Data &lt;script&gt;alert(3)&lt;/script&gt; exports",
        "url": " JAVASCRIPT:alert(4)",
        "text": "# Exports\n\nInvoices can be exported as CSV from the billing page.",
    },
    {
        "id": "fine.md",
        "title": "Generics: List<T>",
        "url": "https://docs.example.com/fine",
        "text": "# Fine\n\n## Invoices\n\nInvoices are kept for seven years.",
    },
]


def test_sources_carry_no_markup_scripts_or_images(docent: Docent) -> None:
    docent.ingest(HOSTILE_DOCUMENTS)
    body = {"question": "When are invoices emailed?", "top_k": 10}
    with docent.client() as client:
        as_json = client.post("/chat", json=body, headers={"Accept": "application/json"}).json()
        streamed = parse_sse(client.post("/chat", json=body).text)

    for sources in (as_json["sources"], streamed[0]["sources"]):
        by_id = {s["document_id"]: s for s in sources}
        assert set(by_id) == {"evil.md", "data.md", "fine.md"}
        evil, data, fine = by_id["evil.md"], by_id["data.md"], by_id["fine.md"]
        assert evil["title"] == "Billing & invoices"
        assert evil["url"] is None and data["url"] is None
        assert "<" not in data["title"] and "alert(3)" in data["title"]  # text, not a tag
        assert fine["title"] == "Generics: List<T>"
        assert fine["url"] == "https://docs.example.com/fine#invoices"
        for source in sources:
            shown = " ".join(str(source[k]) for k in ("title", "heading", "url", "snippet"))
            assert "evil.example" not in shown and "![" not in shown and "<img" not in shown
            assert "onerror" not in shown and "onmouseover" not in shown
            assert "javascript" not in str(source["url"]).lower()
        assert "tracker" in evil["snippet"]  # an image becomes its alt text


# 12. Slow clients against `docent serve` -----------------------------------------------------


def closed_within(sock: socket.socket, limit_s: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes `sock` (trickling a byte every 0.2 s), None if not."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < limit_s:
        try:
            if trickle:
                sock.sendall(trickle)
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset or broken pipe: closed by the server
            return time.monotonic() - started
    return None


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    return sock


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    env = {"HEADER_TIMEOUT_S": "1", "BODY_TIMEOUT_S": "2", "MAX_CONNECTIONS_PER_CLIENT": "10",
           "ADMIN_API_KEYS": ADMIN_KEY}  # fmt: skip
    with docent_server(env, str(tmp_path_factory.mktemp("guarded"))) as running:
        yield running


def test_slow_heads_slow_bodies_and_bare_connections_are_closed(
    guarded_server: tuple[str, Any],
) -> None:
    url, process = guarded_server
    port = int(url.rsplit(":", 1)[1])
    bare = connect(port)
    slowloris = connect(port)
    slowloris.sendall(b"POST /chat HTTP/1.1\r\nHost: x\r\n")
    slow_body = connect(port)
    slow_body.sendall(
        b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            waits = {
                "bare": pool.submit(closed_within, bare, 20),
                "slowloris": pool.submit(closed_within, slowloris, 20, b"X"),
                "slow body": pool.submit(closed_within, slow_body, 20, b" "),
            }
            health = httpx.get(f"{url}/health", timeout=5)
            times = {name: wait.result() for name, wait in waits.items()}
    finally:
        for sock in (bare, slowloris, slow_body):
            sock.close()

    print("closed after", {k: round(v, 1) if v else v for k, v in times.items()})
    # Unbounded, each was held 100 s and more; here the head has 1 s and the body 2 s.
    assert all(t is not None and t < 10 for t in times.values()), times
    assert health.status_code == 200 and process.poll() is None


def test_a_keep_alive_client_is_not_cut_off_between_requests(
    guarded_server: tuple[str, Any],
) -> None:
    url, _ = guarded_server
    with httpx.Client(base_url=url, timeout=5) as client:
        statuses = []
        for _ in range(3):
            statuses.append(client.get("/health").status_code)
            time.sleep(1.5)  # longer than the head deadline, shorter than keep-alive
    assert statuses == [200, 200, 200]


def test_one_address_holds_at_most_its_connections(tmp_path: Path) -> None:
    env = {"HEADER_TIMEOUT_S": "60", "MAX_CONNECTIONS_PER_CLIENT": "10"}
    with docent_server(env, str(tmp_path)) as (url, process):
        port = int(url.rsplit(":", 1)[1])
        held = [connect(port) for _ in range(30)]
        try:
            time.sleep(1)
            refused = sum(closed_within(sock, 0.3) is not None for sock in held)
            # Another address is served meanwhile; the greedy one gets nothing more.
            other = connect(port, source="127.0.0.2")
            other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            other_reply = other.recv(4096)
            other.close()
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{url}/health", timeout=2)
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.5)
        after = httpx.get(f"{url}/health", timeout=5)
        assert process.poll() is None

    assert refused == 20
    assert other_reply.startswith(b"HTTP/1.1 200")
    assert after.status_code == 200


# 14. The rest --------------------------------------------------------------------------------


def test_the_admin_key_file_is_private_from_its_first_byte(tmp_path: Path) -> None:
    previous = os.umask(0)  # inherited by the server: a plain create would be world-readable
    try:
        with docent_server({}, str(tmp_path)) as (url, _):
            key_file = tmp_path / "admin-key"
            mode = stat.S_IMODE(key_file.stat().st_mode)
            key = key_file.read_text().strip()
            listed = httpx.get(f"{url}/documents", headers={"X-API-Key": key}, timeout=5)
    finally:
        os.umask(previous)
    assert mode == 0o600
    assert listed.status_code == 200
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".admin-key")] == []


def test_a_second_writer_keeps_the_first_key(tmp_path: Path) -> None:
    from docent.cli import _create_private

    path = tmp_path / "admin-key"
    _create_private(path, "first")
    _create_private(path, "second")
    assert path.read_text() == "first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin-key"]


@contextmanager
def serve_in(folder: Path, env: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """`docent serve` started from `folder` (its working directory)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {k: v for k, v in os.environ.items() if k != "SAMPLE_CORPUS"}
    full_env.update({"QDRANT_PATH": str(folder / ".data" / "qdrant"), "LOG_LEVEL": "WARNING",
                     "ADMIN_API_KEYS": ADMIN_KEY, **env})  # fmt: skip
    command = [sys.executable, "-m", "docent.cli", "serve", "--port", str(port)]
    ready = lambda: httpx.get(f"{url}/health", timeout=1).status_code == 200  # noqa: E731
    with background_process(command, ready, "docent", env=full_env, cwd=folder) as process:
        yield url, process


@pytest.mark.slow
def test_the_sample_corpus_is_docents_own_docs_and_only_when_asked(tmp_path: Path) -> None:
    notes = tmp_path / "docs" / "internal-notes.md"
    notes.parent.mkdir()
    secret = f"pw-{uuid.uuid4().hex}"
    notes.write_text(f"# Internal notes\n\nThe staging password is {secret}.")
    admin = {"X-API-Key": ADMIN_KEY}
    question = {"question": "What is the staging password?"}

    with serve_in(tmp_path, {}) as (url, _):  # SAMPLE_CORPUS unset
        unasked = httpx.get(f"{url}/documents", headers=admin).json()["documents"]
        answer = httpx.post(f"{url}/chat", json=question, headers={"Accept": "application/json"})
    with serve_in(tmp_path, {"SAMPLE_CORPUS": "docent"}) as (url, _):
        asked = {d["id"] for d in httpx.get(f"{url}/documents", headers=admin).json()["documents"]}
        answer_asked = httpx.post(
            f"{url}/chat", json=question, headers={"Accept": "application/json"}
        )
    folder_name = subprocess.run(
        [sys.executable, "-m", "docent.cli", "serve", "--port", str(free_port())],
        env={**os.environ, "SAMPLE_CORPUS": "docs", "ADMIN_API_KEYS": ADMIN_KEY},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert unasked == []
    assert secret not in answer.text
    assert {"getting-started.md", "configuration.md", "reliability.md"} <= asked
    assert "internal-notes.md" not in asked
    assert secret not in answer_asked.text
    assert folder_name.returncode == 2
    assert "SAMPLE_CORPUS" in folder_name.stderr


def test_pages_carry_security_headers(docent: Docent) -> None:
    with docent.client() as client:
        page, docs, health = client.get("/"), client.get("/docs"), client.get("/health")
        widget = client.get("/widget.js")

    for response in (page, docs):
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script_src = page.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    assert script_src == " 'self'"  # no inline script can run on Docent's page
    for response in (page, docs, health, widget):
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in health.headers  # JSON: nothing to render


def test_api_docs_can_be_switched_off(tmp_path: Path) -> None:
    with running_docent(tmp_path, api_docs=False) as docent, docent.client() as client:
        statuses = [client.get(path).status_code for path in ("/docs", "/openapi.json")]
        chat = client.post("/chat", json={"question": "q"})
    assert statuses == [404, 404]
    assert chat.status_code == 200


def test_docent_serve_sends_no_server_header(guarded_server: tuple[str, Any]) -> None:
    url, _ = guarded_server
    response = httpx.get(f"{url}/health", timeout=5)
    assert response.status_code == 200
    assert "server" not in response.headers


def test_early_refusals_carry_cors_headers(tmp_path: Path) -> None:
    origin = "https://docs.example.com"
    with (
        running_docent(tmp_path, cors_allow_origins=(origin,), max_chat_body_bytes=2048) as docent,
        docent.client(headers={"Origin": origin}) as client,
    ):
        too_large = client.post("/chat", json={"question": "q", "pad": "x" * 5000})
        wrong_type = client.post("/chat", content=b"q", headers={"content-type": "text/plain"})
        limited_body = client.post(
            "/chat",
            content=iter([b'{"question": "', b"x" * 5000, b'"}']),
            headers={"content-type": "application/json"},
        )
    assert [too_large.status_code, wrong_type.status_code, limited_body.status_code] == [
        413, 415, 413,
    ]  # fmt: skip
    for response in (too_large, wrong_type, limited_body):
        assert response.headers["access-control-allow-origin"] == origin
        assert "x-request-id" in response.headers["access-control-expose-headers"]


@pytest.mark.parametrize(
    "protocol", ["SettingsBoundedH11Protocol", "SettingsBoundedHttpToolsProtocol"]
)
def test_each_bounded_protocol_closes_a_slow_head(tmp_path: Path, protocol: str) -> None:
    """`docent serve` picks httptools' protocol when installed, h11's otherwise: both carry the
    bounds (the image names the first on its uvicorn command line)."""
    from tests.support.servers import free_port

    port = free_port()
    env = {**os.environ, "QDRANT_PATH": str(tmp_path / "q"), "HEADER_TIMEOUT_S": "1"}
    command = [sys.executable, "-m", "uvicorn", "functions.bundle:app", "--port", str(port),
               "--http", f"docent.serving:{protocol}", "--log-level", "warning"]  # fmt: skip

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    with background_process(command, ready, "uvicorn", env=env, cwd=ROOT):
        slowloris = connect(port)
        slowloris.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            closed_after = closed_within(slowloris, 20, b"X")
        finally:
            slowloris.close()
    assert closed_after is not None and closed_after < 10, closed_after
