"""Web sources: a real built site (MkDocs + Material) served on loopback with its sitemap.

The server counts every body it sends, so "the second sync downloads nothing unchanged" is
measured where it happens. Hostile pages sit beside the good ones: each is refused or skipped
with its reason, and nothing else is lost. Every request goes through a transport that fails the
test if anything but loopback is ever contacted.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from docent.errors import Forbidden, UpstreamError
from docent.services import Services
from docent.sites.fetch import Policy, sync_web
from docent.sites.sync import LocalTarget
from tests.conftest import running_docent
from tests.support.servers import free_port
from tests.test_lambda import lambda_env  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

SITES = Path(__file__).parent / "fixtures" / "sites"
HUGE = 50 * 1024 * 1024


@dataclass
class Site:
    url: str
    root: Path
    bodies: Counter[str] = field(default_factory=Counter)  # path -> 200 bodies sent
    not_modified: Counter[str] = field(default_factory=Counter)  # path -> 304s sent
    requests: Counter[str] = field(default_factory=Counter)  # path -> requests received
    huge_sent: int = 0


def hostile_sitemap(base: str) -> str:
    paths = [
        "guide/install/", "redirect-private", "huge", "huge-declared", "hang",
        "private/secret.html", "data.bin", "missing.html",
    ]  # fmt: skip
    urls = [base + p for p in paths] + [base.replace("127.0.0.1", "localhost") + "other.html"]
    entries = "".join(f"<url><loc>{u}</loc></url>" for u in urls)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
    )


def handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def send_body(self, body: bytes, kind: str) -> None:
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                site.not_modified[self.path] += 1
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)
            site.bodies[self.path] += 1

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            site.requests[path] += 1
            if path == "/robots.txt":
                self.send_body(b"User-agent: *\nDisallow: /private/\n", "text/plain")
            elif path == "/timed-sitemap.xml":
                stamp = "2026-11-26T10:00:00+00:00"
                entries = "".join(
                    f"<url><loc>{site.url}{p}</loc><lastmod>{stamp}</lastmod></url>"
                    for p in ("", "guide/install/", "guide/hidden/")
                )
                body = f'<?xml version="1.0"?><urlset>{entries}</urlset>'
                self.send_body(body.encode(), "application/xml")
            elif path == "/hostile-sitemap.xml":
                self.send_body(hostile_sitemap(site.url).encode(), "application/xml")
            elif path == "/redirect-private":
                self.send_response(302)
                self.send_header("Location", "http://10.1.2.3/metadata")
                self.end_headers()
            elif path == "/huge":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                chunk = b"<p>" + b"x" * 65536 + b"</p>"
                try:
                    while site.huge_sent < HUGE:
                        self.wfile.write(chunk)
                        site.huge_sent += len(chunk)
                except OSError:
                    pass  # the client hung up: what a size cap should do
            elif path == "/huge-declared":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(HUGE))
                self.end_headers()
            elif path == "/hang":
                time.sleep(6)
            elif path == "/data.bin":
                self.send_body(b"\x00\x01binary", "application/octet-stream")
            else:
                file = site.root / path.lstrip("/")
                if file.is_dir():
                    file = file / "index.html"
                if not file.is_file():
                    self.send_error(404)
                    return
                kind = "application/xml" if file.suffix == ".xml" else "text/html"
                self.send_body(file.read_bytes(), kind)

    return Handler


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    project = tmp / "project"
    shutil.copytree(SITES / "mkdocs", project)
    config = project / "mkdocs.yml"
    config.write_text(config.read_text().replace("https://docs.example.test/fixture/", url))
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-q", "-d", str(tmp / "site")],
        cwd=project, check=True, capture_output=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    served = Site(url, tmp / "site")
    server = ThreadingHTTPServer(("127.0.0.1", port), handler(served))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


class LoopbackOnly(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host in ("127.0.0.1", "localhost"), f"contacted {request.url}"
        return await super().handle_async_request(request)


POLICY = Policy(
    allowed_hosts=frozenset({"127.0.0.1", "localhost", "10.1.2.3"}),
    allow_networks=(__import__("ipaddress").ip_network("127.0.0.0/8"),),
    max_bytes=1024 * 1024,
    timeout_s=1.5,
    concurrency=3,
    max_pages=100,
)


async def test_a_sitemap_syncs_every_page_then_downloads_nothing_unchanged(
    site: Site, services: Services
) -> None:
    sitemap = site.url + "sitemap.xml"
    before = sum(site.bodies.values())
    first = await sync_web(services, sitemap, POLICY, transport=LoopbackOnly())
    pages_first = sum(site.bodies.values()) - before
    second = await sync_web(services, sitemap, POLICY, transport=LoopbackOnly())
    pages_second = sum(site.bodies.values()) - before - pages_first

    stored = await LocalTarget(services).metadata(sitemap)
    assert set(stored) == {site.url, site.url + "guide/install/", site.url + "guide/hidden/"}
    assert (first.added, first.changed, first.deleted) == (3, 0, 0)
    assert (second.added, second.changed, second.unchanged, second.deleted) == (0, 0, 3, 0)
    assert pages_first == 5  # sitemap.xml, robots.txt and the three pages
    assert pages_second == 2  # sitemap.xml and robots.txt: no page body again
    # MkDocs' lastmod is a bare date (not precise enough to skip): asked for by ETag, 304s.
    assert sum(site.not_modified.values()) == 3
    heads, _ = await services.store.documents(100, None)
    install = next(h for h in heads if h.payload["document_id"].endswith("guide/install/"))
    assert install.payload["url"] == site.url + "guide/install/"
    assert install.payload["title"] == "Install the thing"


async def test_a_page_source_is_fetched_conditionally(site: Site, services: Services) -> None:
    page = site.url + "guide/install/"
    first = await sync_web(services, page, POLICY, transport=LoopbackOnly())
    sent = site.bodies["/guide/install/"]
    second = await sync_web(services, page, POLICY, transport=LoopbackOnly())

    assert first.added == 1 and second.unchanged == 1
    assert site.bodies["/guide/install/"] == sent  # a 304: no body the second time


async def test_hostile_pages_are_refused_with_reasons_and_lose_nothing(
    site: Site, services: Services
) -> None:
    result = await sync_web(
        services, site.url + "hostile-sitemap.xml", POLICY, transport=LoopbackOnly()
    )

    reasons = {item["id"].removeprefix(site.url): item["reason"] for item in result.skipped}
    assert result.added == 1  # guide/install/
    assert "non-public address (10.1.2.3)" in reasons["redirect-private"]
    assert "larger than 1048576 bytes" in reasons["huge"]
    assert "larger than 1048576 bytes" in reasons["huge-declared"]
    assert "no answer within 1.5 s" in reasons["hang"]
    assert reasons["private/secret.html"] == "disallowed by robots.txt"
    assert reasons["data.bin"] == "not HTML (application/octet-stream)"
    assert reasons["missing.html"] == "HTTP 404"
    other = next(k for k in reasons if "localhost" in k)
    assert reasons[other] == "not the same site as the source"
    assert site.huge_sent < HUGE // 2  # the download was cut off, not read to the end


async def test_a_host_outside_the_allow_list_is_refused(site: Site, services: Services) -> None:
    strict = Policy(
        allowed_hosts=frozenset({"docs.example.test"}),
        allow_networks=(),
        max_bytes=1024,
        timeout_s=1,
        concurrency=1,
        max_pages=1,
    )
    with pytest.raises(Forbidden, match="not in SYNC_ALLOWED_HOSTS"):
        await sync_web(services, site.url + "sitemap.xml", strict, transport=LoopbackOnly())
    loopback_refused = Policy(**{**strict.__dict__, "allowed_hosts": frozenset({"127.0.0.1"})})
    with pytest.raises(Forbidden, match="non-public address"):
        await sync_web(
            services, site.url + "sitemap.xml", loopback_refused, transport=LoopbackOnly()
        )
    closed = f"http://127.0.0.1:{free_port()}/sitemap.xml"
    with pytest.raises(UpstreamError, match="ConnectError"):
        await sync_web(services, closed, POLICY, transport=LoopbackOnly())


def test_post_sync_is_admin_only_and_reports_counts(site: Site, tmp_path: Path) -> None:
    with running_docent(
        tmp_path,
        sync_allowed_hosts=("127.0.0.1",),
        sync_allow_networks=("127.0.0.0/8",),
    ) as server:
        with server.client() as anonymous:
            refused = anonymous.post("/sync", json={"source": site.url + "sitemap.xml"})
        with server.admin() as admin:
            synced = admin.post("/sync", json={"source": site.url + "sitemap.xml"})
            other = admin.post("/sync", json={"source": "http://localhost:1/sitemap.xml"})
            listed = admin.get("/documents").json()["documents"]

    assert refused.status_code == 401
    assert synced.status_code == 200, synced.text
    assert {k: synced.json()[k] for k in ("added", "changed", "unchanged", "deleted")} == {
        "added": 3, "changed": 0, "unchanged": 0, "deleted": 0
    }  # fmt: skip
    assert other.status_code == 403 and "SYNC_ALLOWED_HOSTS" in other.text
    assert {d["source"] for d in listed} == {site.url + "sitemap.xml"}


def test_docent_sync_of_a_sitemap_from_the_command_line(site: Site, tmp_path: Path) -> None:
    import json
    import os

    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "QDRANT_PATH": str(tmp_path / "data" / "qdrant"),
        "DOCENT_URL": f"http://127.0.0.1:{free_port()}",  # no server: the embedded store
        "SAMPLE_CORPUS": "",
    }

    def docent(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "docent.cli", *args],
            env={**env, **extra}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    refused = docent("sync", site.url + "sitemap.xml")
    synced = docent("sync", site.url + "sitemap.xml", SYNC_ALLOW_NETWORKS="127.0.0.0/8")

    assert refused.returncode == 1 and "non-public address (127.0.0.1)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout.strip().splitlines()[-1]) == {
        "added": 3, "changed": 0, "unchanged": 0, "deleted": 0
    }  # fmt: skip


def test_a_scheduled_sync_event_syncs_its_source_on_lambda(
    site: Site,
    lambda_env: Path,  # noqa: F811  (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from docent.config import get_settings
    from tests.test_lambda import EVENTS, LambdaContext, handler_module

    sample = json.loads((EVENTS / "ingest-sync.json").read_text())
    assert set(sample) == {"sync_source"}  # the schedule's fixed input, as in events/
    monkeypatch.setenv("SYNC_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("SYNC_ALLOW_NETWORKS", "127.0.0.0/8")
    get_settings.cache_clear()
    ingest = handler_module("ingest")

    first = ingest.handler({"sync_source": site.url + "sitemap.xml"}, LambdaContext())
    second = ingest.handler({"sync_source": site.url + "sitemap.xml"}, LambdaContext())
    with pytest.raises(Forbidden):
        ingest.handler({"sync_source": "http://localhost:1/sitemap.xml"}, LambdaContext())

    assert (first["added"], first["deleted"]) == (3, 0)
    assert (second["unchanged"], second["added"], second["changed"]) == (3, 0, 0)


async def test_requests_go_to_the_checked_address_not_a_second_lookup() -> None:
    from docent.sites.fetch import pinned_request

    async with httpx.AsyncClient() as client:
        plain = pinned_request(client, "http://docs.example.test/a?b=1", "203.0.113.5", None)
        tls = pinned_request(client, "https://docs.example.test:8443/", "2001:db8::1", {"X": "1"})

    assert str(plain.url) == "http://203.0.113.5/a?b=1"
    assert plain.headers["host"] == "docs.example.test"
    assert str(tls.url) == "https://[2001:db8::1]:8443/"
    assert tls.headers["host"] == "docs.example.test:8443" and tls.headers["x"] == "1"
    assert tls.extensions["sni_hostname"] == "docs.example.test"  # the certificate's name


async def test_a_lastmod_with_a_time_skips_the_request_altogether(
    site: Site, services: Services
) -> None:
    sitemap = site.url + "timed-sitemap.xml"
    first = await sync_web(services, sitemap, POLICY, transport=LoopbackOnly())
    before = sum(site.requests[p] for p in ("/", "/guide/install/", "/guide/hidden/"))
    second = await sync_web(services, sitemap, POLICY, transport=LoopbackOnly())
    after = sum(site.requests[p] for p in ("/", "/guide/install/", "/guide/hidden/"))

    assert first.added == 3 and second.unchanged == 3
    assert after == before  # not even a conditional request


async def test_crawled_pages_link_only_to_ids_the_served_html_has(site: Site) -> None:
    from selectolax.lexbor import LexborHTMLParser

    from docent.ingest import DocumentIn
    from docent.parsing import parse
    from docent.sites.fetch import web_items

    items = await web_items(site.url + "sitemap.xml", POLICY, {}, transport=LoopbackOnly())
    docs = [i for i in items if isinstance(i, DocumentIn)]
    assert len(docs) == 3
    for doc in docs:
        served = site.root / (doc.id.removeprefix(site.url) or "") / "index.html"
        ids = {n.attributes["id"] for n in LexborHTMLParser(served.read_text()).css("[id]")}
        anchors = [s.anchor for s in parse(doc.text, doc.format, doc.metadata["anchors"]).sections]
        assert any(anchors), doc.id
        assert {a for a in anchors if a} <= ids, doc.id
        text = " ".join(b.text for s in parse(doc.text, "html").sections for b in s.blocks)
        assert "Skip to content" not in text and "¶" not in text  # navigation, permalinks


async def test_a_malformed_url_is_refused_not_a_crash(services: Services) -> None:
    with pytest.raises(Forbidden, match="not a valid URL"):
        await sync_web(services, "http://[::1", POLICY, transport=LoopbackOnly())
    with pytest.raises(Forbidden, match="not a valid URL"):
        await sync_web(services, "http://127.0.0.1:99999/", POLICY, transport=LoopbackOnly())
