"""Web sources: a sitemap or a page URL, fetched politely and safely.

- Only hosts in `SYNC_ALLOWED_HOSTS` are fetched (the CLI adds the host it was given); every
  redirect is checked again, and a name that resolves to a loopback, private, link-local or
  otherwise non-public address is refused unless `SYNC_ALLOW_NETWORKS` names its network
  (such as 127.0.0.0/8 for a site served on this machine).
- Same site only: a sitemap's pages on another host are skipped. robots.txt is honoured.
- Each request has a timeout and a size cap (the body is streamed and cut off past
  `SYNC_MAX_PAGE_BYTES`); at most `SYNC_CONCURRENCY` requests run at once.
- An unchanged page is not downloaded again: a sitemap `lastmod` (with a time) equal to the
  stored one skips the request, else the stored ETag / Last-Modified make it a conditional
  request (304).
- Only HTML is ingested; its main content (headings keep their ids) becomes the document.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

from docent.errors import Forbidden, UpstreamError
from docent.ingest import DocumentIn
from docent.sites.sync import Item, Unchanged

if TYPE_CHECKING:
    import httpx

    from docent.config import Settings
    from docent.services import Services
    from docent.sites.sync import SyncResult

USER_AGENT = "DocentBot/1.0 (+https://github.com/docent)"
MAX_REDIRECTS = 5
MAX_SITEMAP_DEPTH = 3
HTML_TYPES = ("text/html", "application/xhtml+xml")


class Refused(Exception):
    """A URL Docent will not fetch (`policy`: by the rules) or could not (the network)."""

    def __init__(self, message: str, *, policy: bool = False) -> None:
        super().__init__(message)
        self.policy = policy


@dataclass(frozen=True)
class Fetched:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Policy:
    allowed_hosts: frozenset[str]
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    max_bytes: int
    timeout_s: float
    concurrency: int
    max_pages: int

    @classmethod
    def from_settings(cls, settings: Settings, extra_hosts: Sequence[str] = ()) -> Policy:
        hosts = {h.lower() for h in (*settings.sync_allowed_hosts, *extra_hosts)}
        return cls(
            allowed_hosts=frozenset(hosts),
            allow_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in settings.sync_allow_networks
            ),
            max_bytes=settings.sync_max_page_bytes,
            timeout_s=settings.sync_timeout_s,
            concurrency=settings.sync_concurrency,
            max_pages=settings.sync_max_pages,
        )


def address_allowed(address: str, policy: Policy) -> bool:
    """A public unicast address, or one inside a network the policy names."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0]
    )
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == n.version and ip in n for n in policy.allow_networks):
        return True
    return ip.is_global and not ip.is_multicast


async def check_url(url: str, policy: Policy) -> str:
    """The address to connect to; `Refused` unless http(s), an allowed host and address."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # a bad IPv6 literal or port, in a source or a redirect
        raise Refused(f"{url}: not a valid URL ({exc})", policy=True) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"{url}: only http and https URLs are fetched", policy=True)
    host = parts.hostname.lower()
    if host not in policy.allowed_hosts:
        raise Refused(f"{url}: host {host} is not in SYNC_ALLOWED_HOSTS", policy=True)
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Refused(f"{url}: {host} does not resolve ({exc})") from exc
    for info in infos:
        address = str(info[4][0])
        if not address_allowed(address, policy):
            raise Refused(
                f"{url}: {host} resolves to a non-public address ({address})", policy=True
            )
    if not infos:
        raise Refused(f"{url}: {host} does not resolve")
    return str(infos[0][4][0])


def pinned_request(
    client: httpx.AsyncClient, url: str, address: str, headers: dict[str, str] | None
) -> httpx.Request:
    """A GET of `url` sent to the checked `address`: the name is not resolved a second time
    (no DNS rebinding between check and connect); Host and TLS SNI/verification keep the name."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host + (f":{parts.port}" if parts.port else "")
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    name = str(parts.hostname) + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return client.build_request(
        "GET", target, headers={**(headers or {}), "Host": name}, extensions=extensions
    )


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    policy: Policy,
    headers: dict[str, str] | None = None,
) -> Fetched:
    """GET with redirects followed by hand (each one re-checked), a deadline and a size cap."""
    import httpx

    for _ in range(MAX_REDIRECTS + 1):
        address = await check_url(url, policy)
        try:
            async with asyncio.timeout(policy.timeout_s):
                request = pinned_request(client, url, address, headers)
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    if response.is_redirect and "location" in response.headers:
                        try:
                            url = urljoin(url, response.headers["location"])
                        except ValueError as exc:
                            raise Refused(f"{url}: a redirect to an invalid URL") from exc
                        continue
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > policy.max_bytes:
                        raise Refused(f"{url}: larger than {policy.max_bytes} bytes")
                    body = bytearray()
                    async for part in response.aiter_bytes():
                        body += part
                        if len(body) > policy.max_bytes:
                            raise Refused(f"{url}: larger than {policy.max_bytes} bytes")
                    return Fetched(url, response.status_code, dict(response.headers), bytes(body))
                finally:
                    await response.aclose()
        except TimeoutError as exc:
            raise Refused(f"{url}: no answer within {policy.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise Refused(f"{url}: {type(exc).__name__}: {exc}") from exc
    raise Refused(f"{url}: more than {MAX_REDIRECTS} redirects")


def same_site(url: str, origin: str) -> bool:
    a, b = urlsplit(url), urlsplit(origin)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _sitemap_entries(body: bytes) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(page URL, lastmod) entries and nested sitemap URLs of a sitemap or sitemap index."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(body.decode("utf-8", errors="replace"))
    pages = []
    for node in tree.css("url"):
        loc = node.css_first("loc")
        lastmod = node.css_first("lastmod")
        if loc is not None and (loc.text() or "").strip():
            pages.append((loc.text().strip(), lastmod.text().strip() if lastmod else None))
    nested = []
    for node in tree.css("sitemap > loc"):
        if (node.text() or "").strip():
            nested.append(node.text().strip())
    return pages, nested


def _is_sitemap(fetched: Fetched) -> bool:
    kind = fetched.headers.get("content-type", "").split(";")[0].strip().lower()
    head = fetched.body[:500].lstrip().lower()
    return kind in ("application/xml", "text/xml") or (
        head.startswith(b"<?xml") and (b"<urlset" in head or b"<sitemapindex" in head)
    )


async def web_items(
    source: str,
    policy: Policy,
    stored: dict[str, dict[str, Any]],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Item]:
    """The source's pages as sync items: documents, `Unchanged` markers, or (url, reason)."""
    import httpx

    source = urldefrag(source)[0]
    async with httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT}, transport=transport, timeout=policy.timeout_s
    ) as client:
        try:
            # A page source fetched before is asked for conditionally: no body if unchanged.
            first = await fetch(client, source, policy, _conditional(stored.get(source)))
        except Refused as exc:
            raise (Forbidden if exc.policy else UpstreamError)(str(exc)) from exc
        if first.status == 304:
            return [Unchanged(source)]
        if first.status != 200:
            raise UpstreamError(f"{source}: HTTP {first.status}")
        robots = await _robots(client, source, policy)
        entries: list[tuple[str, str | None]]
        if _is_sitemap(first):
            entries = await _collect(client, first, policy, source)
        else:
            entries = [(first.url, None)]
        items: list[Item] = []
        pages: list[tuple[str, str | None]] = []
        for url, lastmod in entries[: policy.max_pages]:
            url = urldefrag(url)[0]
            if not same_site(url, source):
                items.append((url, "not the same site as the source"))
            elif not robots.can_fetch(USER_AGENT, url):
                items.append((url, "disallowed by robots.txt"))
            else:
                pages.append((url, lastmod))
        limit = asyncio.Semaphore(policy.concurrency)

        async def one(url: str, lastmod: str | None) -> Item:
            async with limit:
                return await _page(client, url, lastmod, stored.get(url), source, policy, first)

        items += await asyncio.gather(*(one(u, m) for u, m in pages))
        return items


def _conditional(previous: dict[str, Any] | None) -> dict[str, str]:
    """If-None-Match / If-Modified-Since from what the last fetch of a page stored."""
    headers = {}
    if previous and previous.get("etag"):
        headers["If-None-Match"] = str(previous["etag"])
    if previous and previous.get("last_modified"):
        headers["If-Modified-Since"] = str(previous["last_modified"])
    return headers


async def _robots(client: httpx.AsyncClient, source: str, policy: Policy) -> RobotFileParser:
    parts = urlsplit(source)
    robots = RobotFileParser()
    try:
        fetched = await fetch(client, f"{parts.scheme}://{parts.netloc}/robots.txt", policy)
    except Refused:
        robots.parse([])
        return robots
    if fetched.status == 200:
        robots.parse(fetched.body.decode("utf-8", errors="replace").splitlines())
    elif fetched.status in (401, 403):
        robots.parse(["User-agent: *", "Disallow: /"])
    else:
        robots.parse([])
    return robots


async def _collect(
    client: httpx.AsyncClient, sitemap: Fetched, policy: Policy, source: str
) -> list[tuple[str, str | None]]:
    entries, nested = _sitemap_entries(sitemap.body)
    queue = [(url, 1) for url in nested]
    while queue and len(entries) < policy.max_pages:
        url, depth = queue.pop(0)
        if depth > MAX_SITEMAP_DEPTH or not same_site(url, source):
            continue
        try:
            fetched = await fetch(client, url, policy)
        except Refused:
            continue
        if fetched.status == 200:
            more, deeper = _sitemap_entries(fetched.body)
            entries += more
            queue += [(u, depth + 1) for u in deeper]
    return entries


async def _page(
    client: httpx.AsyncClient,
    url: str,
    lastmod: str | None,
    previous: dict[str, Any] | None,
    source: str,
    policy: Policy,
    first: Fetched,
) -> Item:
    from docent.sites.html import main_content

    previous = previous or {}
    # A lastmod with a time is trusted; a bare date (MkDocs writes the build day) is not
    # precise enough to skip a same-day change, so that page is asked for conditionally.
    if lastmod and "T" in lastmod and previous.get("lastmod") == lastmod:
        return Unchanged(url)
    headers = _conditional(previous)
    try:
        if first.url == url and first.status == 200:
            fetched = first  # a page source: its body is already here
        else:
            fetched = await fetch(client, url, policy, headers)
    except Refused as exc:
        return (url, str(exc))
    if fetched.status == 304:
        return Unchanged(url)
    if fetched.status != 200:
        return (url, f"HTTP {fetched.status}")
    if not same_site(fetched.url, source):
        return (url, f"redirected off the site to {fetched.url}")
    kind = fetched.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in HTML_TYPES:
        return (url, f"not HTML ({kind or 'no content type'})")
    title, body = main_content(fetched.body.decode("utf-8", errors="replace"))
    metadata: dict[str, Any] = {"source": source, "anchors": "html"}
    for key, header in (("etag", "etag"), ("last_modified", "last-modified")):
        if fetched.headers.get(header):
            metadata[key] = fetched.headers[header]
    if lastmod:
        metadata["lastmod"] = lastmod
    return DocumentIn(id=url, text=body, title=title, url=url, format="html", metadata=metadata)


async def sync_web(
    services: Services,
    source: str,
    policy: Policy,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SyncResult:
    """Sync a sitemap or page URL into the store (see `docent.sites.sync`)."""
    from docent.sites.sync import LocalTarget, sync

    target = LocalTarget(services)
    stored = await target.metadata(source)
    items = await web_items(source, policy, stored, transport=transport)
    return await sync(target, source, items)
