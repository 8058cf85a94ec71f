"""The `docent` command: serve, ingest, sync, ask, snapshot, restore, gateway, qdrant-standin.

`ingest`, `ask` and `snapshot` talk to a running server at DOCENT_URL when one answers there
(the embedded store is locked by the process that holds it), else they open the embedded store
themselves. `restore` replaces the store, so it needs it free (no server holding it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docent.vectors import VectorStore


def admin_key_file() -> Path:
    from docent.config import get_settings

    return Path(get_settings().qdrant_path).parent / "admin-key"


def local_admin_key() -> str | None:
    """The key to use for admin routes: DOCENT_API_KEY, else the one `docent serve` generated."""
    from docent.config import get_settings

    key = get_settings().docent_api_key
    if key:
        return key
    path = admin_key_file()
    return path.read_text().strip() if path.exists() else None


def _ensure_admin_key() -> None:
    """Without ADMIN_API_KEYS, `serve` makes a local admin key (kept 0600 beside the data)."""
    if os.environ.get("ADMIN_API_KEYS"):
        return
    path = admin_key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path, secrets.token_urlsafe(32))
    os.environ["ADMIN_API_KEYS"] = path.read_text().strip()
    print(f"docent: admin key for this server is in {path}", file=sys.stderr)


def _create_private(path: Path, text: str) -> None:
    """Write `path` readable by its owner only from its first byte, and whole or not at all.

    The key goes into a fresh 0600 file (O_EXCL: never an existing one, never a symlink's
    target), which is then linked into place: a server starting alongside sees no file or the
    complete one, and the first link wins.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another server made it first: theirs
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def server_speedups() -> dict[str, str]:
    """uvloop and httptools when installed (requirements-serve.txt), else asyncio and h11.

    Each streamed token is a socket read and a write on the event loop: the C loop and parser
    take a good part of the per-token CPU off a small server. Either parser carries the bounds
    on slow and greedy clients (docent.serving).
    """
    from importlib.util import find_spec

    from docent.serving import http_protocol

    return {"loop": "uvloop" if find_spec("uvloop") else "asyncio", "http": http_protocol()}


def bundled_app() -> str:
    """The app `docent serve` runs, as the installed distribution registers it (the
    `docent.apps` entry point): the CLI never imports the app layer by name."""
    from importlib.metadata import entry_points

    from docent.errors import ConfigurationError

    for entry in entry_points(group="docent.apps", name="bundle"):
        return entry.value
    raise ConfigurationError("No Docent app is installed: run `pip install .` in Docent's tree.")


def serve(host: str | None, port: int | None) -> int:
    import uvicorn

    from docent.config import get_settings

    _ensure_admin_key()
    get_settings.cache_clear()
    settings = get_settings()
    uvicorn.run(
        bundled_app(),
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        access_log=False,  # Docent logs each request as a JSON line itself
        # Longer than proxies' idle timeouts (60 s on ALB): else a reused connection can meet
        # the server closing it (a 502 at the proxy, a ReadError at a client), as the soak saw.
        timeout_keep_alive=75,
        # Slow request heads and bodies are cut off, connections per address capped.
        server_header=False,
        **server_speedups(),  # type: ignore[arg-type]
    )
    return 0


def _server(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url.rstrip("/") + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _plans(paths: Sequence[str], options: Any) -> list[Any]:
    """One plan per path: a folder by its generator, a single file as a one-page source."""
    from docent.sites import Page, Plan, plan, source_of

    plans = []
    for raw in paths:
        if _is_url(raw):
            continue  # web sources are synced by run_sources itself
        path = Path(raw)
        if path.is_file():
            source = source_of(path)

            def read(page: Page, source: str = source) -> Any:
                from docent.corpus import document_from_bytes
                from docent.ingest import DocumentIn

                doc = document_from_bytes(page.path.read_bytes(), page.path.name, page.document_id)
                meta = {"source": source}
                return DocumentIn(id=doc.id, text=doc.text, format=doc.format, metadata=meta)

            single = [Page(path, path.name, None)]
            plans.append(Plan("plain", path.parent, source, single, read))
        else:
            plans.append(plan(path, options))
    return plans


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


async def _sync_url(url: str, client: Any, services: Any) -> Any:
    """A sitemap or page URL: a running server syncs it (POST /sync), else this process does."""
    from urllib.parse import urlsplit

    from docent.config import get_settings
    from docent.sites.fetch import Policy, sync_web
    from docent.sites.sync import ServerError, SyncResult

    if client is not None:
        response = await client.post("/sync", json={"source": url})
        if response.status_code != 200:
            raise ServerError(response.status_code, response.text)
        body = response.json()
        counts = {k: body[k] for k in ("added", "changed", "unchanged", "deleted")}
        read = counts["added"] + counts["changed"] + counts["unchanged"]
        return SyncResult(**counts, documents=read, skipped=body.get("skipped", []))
    # The user named this host: it is allowed for this run, on top of SYNC_ALLOWED_HOSTS.
    policy = Policy.from_settings(get_settings(), [urlsplit(url).hostname or ""])
    return await sync_web(services, url, policy)


def _items(site_plan: Any, bar: Any, skipped: list[str]) -> Iterator[Any]:
    """The plan's documents, one file at a time; (id, reason) for a file that failed to read."""
    from docent.errors import DocentError
    from docent.sites import Skipped

    for page in site_plan.pages:
        try:
            yield site_plan.read(page)
        except Skipped as exc:
            skipped.append(f"{page.document_id}: {exc}")
        except DocentError as exc:
            yield (page.document_id, exc.message)
        except OSError as exc:
            yield (page.document_id, f"unreadable ({exc.strerror or exc})")
        finally:
            bar.update(1)


class _Count:
    """The progress bar without tqdm (installed by the `cli` extra): a count at the end."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.n, self.total, self.desc, self.unit = 0, total, desc, unit
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        done = f"{self.desc}: {self.n}/{self.total} {self.unit}s"
        print(f"{done}, {self.postfix}" if self.postfix else done, file=sys.stderr)


def _progress(total: int, desc: str, unit: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return _Count(total, desc, unit)
    return tqdm(total=total, desc=desc, unit=unit)


def run_sources(paths: Sequence[str], options: Any, *, delete: bool) -> int:
    """`docent ingest` (delete=False) and `docent sync` (delete=True) over folders and files."""
    from docent.config import get_settings
    from docent.errors import DocentError
    from docent.sites.sync import HttpTarget, LocalTarget, ServerError, SyncResult, sync

    settings = get_settings()
    try:
        plans = _plans(paths, options)
    except DocentError as exc:
        print(f"docent: {exc.message}", file=sys.stderr)
        return 1
    urls = [p for p in paths if _is_url(p)]
    total_pages = sum(len(p.pages) for p in plans)
    if not total_pages and not urls and not delete:
        print("docent: no .md/.mdx/.html/.txt/.pdf files found", file=sys.stderr)
        return 1
    for site_plan in plans:
        for note in site_plan.notes:
            print(f"docent: {site_plan.root}: {note}", file=sys.stderr)
    verb = "syncing" if delete else "ingesting"
    bar = _progress(total_pages, verb, "file")
    skipped: list[str] = []
    results: list[SyncResult] = []
    failed = 0  # files of a folder that could not be ingested (a web page skipped is no failure)

    def progress(_: int, result: SyncResult) -> None:
        bar.set_postfix(chunks=sum(r.chunks for r in results) + result.chunks, refresh=False)

    async def drive(target: Any, client: Any = None, services: Any = None) -> None:
        nonlocal failed
        for url in urls:
            results.append(await _sync_url(url, client, services))
        for site_plan in plans:
            result = await sync(
                target,
                site_plan.source,
                _items(site_plan, bar, skipped),
                delete=delete,
                take_over=not delete,
                progress=progress,
            )
            results.append(result)
            failed += len(result.skipped)

    async def run() -> None:
        if _server(settings.docent_url):
            import httpx

            key = local_admin_key()
            headers = {"X-API-Key": key} if key else {}
            async with httpx.AsyncClient(
                base_url=settings.docent_url, headers=headers, timeout=300
            ) as client:
                await drive(HttpTarget(client), client=client)
            return
        from docent.services import get_services

        services = get_services()
        try:
            await drive(LocalTarget(services), services=services)
        finally:
            await services.aclose()

    try:
        asyncio.run(run())
    except (DocentError, ServerError) as exc:
        bar.close()
        return _failed(exc)
    bar.close()
    for line in skipped:
        print(f"docent: skipped {line}", file=sys.stderr)
    summary = SyncResult()
    for result in results:
        summary.add(result)
    for item in summary.skipped:
        print(f"docent: not ingested {item['id']}: {item['reason']}", file=sys.stderr)
    counts = summary.as_dict()
    del counts["skipped"]
    if delete:
        print(json.dumps({k: counts[k] for k in ("added", "changed", "unchanged", "deleted")}))
    else:
        print(json.dumps(counts))
    return 1 if failed else 0  # a file not ingested is an error to see


def _failed(exc: Exception) -> int:
    """Report a Docent error on stderr (no traceback); the exit status 1."""
    from docent.config import get_settings
    from docent.errors import DocentError, StoreLocked

    message = exc.message if isinstance(exc, DocentError) else str(exc)
    if isinstance(exc, StoreLocked):
        message += f" (QDRANT_PATH={get_settings().qdrant_path})"
    print(f"docent: {message}", file=sys.stderr)
    return 1


def ask(question: str, top_k: int) -> int:
    from docent.config import get_settings

    settings = get_settings()
    if _server(settings.docent_url):
        return _ask_server(settings.docent_url, question, top_k)

    async def run() -> None:
        from docent import chat, logs
        from docent.services import get_services

        services = get_services()
        try:
            with logs.bound("cli"):
                prepared = await chat.begin(services, chat.Question(question, top_k=top_k), {})
            async for event in chat.events(prepared):
                _print_event(event)
        finally:
            await services.aclose()

    from docent.errors import DocentError

    try:
        asyncio.run(run())
    except DocentError as exc:
        return _failed(exc)
    return 0


def _ask_server(url: str, question: str, top_k: int) -> int:
    import httpx

    with (
        httpx.Client(base_url=url, timeout=120) as client,
        client.stream("POST", "/chat", json={"question": question, "top_k": top_k}) as response,
    ):
        if response.status_code != 200:
            response.read()
            print(f"docent: {response.status_code} {response.text}", file=sys.stderr)
            return 1
        for line in response.iter_lines():
            if line.startswith("data:"):
                _print_event(json.loads(line[5:]))
    return 0


def snapshot(path: str) -> int:
    """Write a consistent snapshot of the index to `path`: through the server holding it, if any."""
    from docent.config import get_settings
    from docent.errors import DocentError

    settings = get_settings()
    destination = os.path.abspath(path)
    if not settings.qdrant_url and _server(settings.docent_url):
        return _snapshot_server(settings.docent_url, destination)

    return _on_store(lambda store: store.snapshot(destination), (DocentError, OSError))


def _on_store(
    action: Callable[[VectorStore], Awaitable[dict[str, Any]]],
    failures: tuple[type[Exception], ...],
) -> int:
    """Run `action` on this process's own store, print its result as JSON, close the store."""

    async def run() -> dict[str, Any]:
        from docent.services import get_services

        services = get_services()
        try:
            return await action(services.store)
        finally:
            await services.aclose()

    try:
        result = asyncio.run(run())
    except failures as exc:
        return _failed(exc)
    print(json.dumps(result))
    return 0


def _snapshot_server(url: str, destination: str) -> int:
    import httpx

    key = local_admin_key()
    headers = {"X-API-Key": key} if key else {}
    target = Path(destination)
    partial = target.with_name(target.name + ".partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            httpx.Client(base_url=url, headers=headers, timeout=600) as client,
            client.stream("GET", "/snapshot") as response,
        ):
            if response.status_code != 200:
                response.read()
                print(f"docent: {response.status_code} {response.text}", file=sys.stderr)
                return 1
            with partial.open("wb") as out:
                for block in response.iter_bytes():
                    out.write(block)
        os.replace(partial, target)
    except (OSError, httpx.HTTPError) as exc:
        return _failed(exc)
    finally:
        partial.unlink(missing_ok=True)
    print(json.dumps({"path": str(target), "bytes": target.stat().st_size, "server": url}))
    return 0


def restore(path: str) -> int:
    """Replace the index with the snapshot at `path` (the embedded store must not be held)."""
    from docent.errors import DocentError

    source = os.path.abspath(path)
    if not os.path.isfile(source):
        print(f"docent: no snapshot file at {source}", file=sys.stderr)
        return 1

    return _on_store(lambda store: store.restore(source), (DocentError,))


_sources: list[dict[str, Any]] = []


def _print_event(event: dict[str, Any]) -> None:
    kind = event["type"]
    if kind == "sources":
        _sources[:] = event["sources"]
    elif kind == "chunk":
        sys.stdout.write(event["content"])
        sys.stdout.flush()
    elif kind == "done":
        print("\n")
        for source in _sources:
            if source["id"] in event["citations"]:
                where = source.get("url") or source["document_id"]
                print(f"[{source['id']}] {source.get('title') or source['document_id']}: {where}")
    elif kind == "error":
        print(f"\ndocent: {event['code']}: {event['message']}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docent", description="Chat with your docs.")
    commands = parser.add_subparsers(dest="command", required=True)
    p_serve = commands.add_parser("serve", help="serve the bundled app (what `make run` runs)")
    p_serve.add_argument("--host")
    p_serve.add_argument("--port", type=int)
    p_ingest = commands.add_parser("ingest", help="ingest folders of .md/.mdx/.html/.txt/.pdf")
    p_ingest.add_argument("paths", nargs="+")
    p_sync = commands.add_parser(
        "sync", help="ingest a source and delete its documents that are gone"
    )
    p_sync.add_argument("paths", nargs="+", metavar="source")
    for p in (p_ingest, p_sync):
        p.add_argument("--base-url", help="the URL the site is published at")
        p.add_argument("--site", choices=["mkdocs", "docusaurus", "sphinx", "github", "plain"])
        p.add_argument("--include", action="append", default=[], metavar="GLOB")
        p.add_argument("--exclude", action="append", default=[], metavar="GLOB")
    p_ask = commands.add_parser("ask", help="ask a question; the answer streams to the terminal")
    p_ask.add_argument("question")
    p_ask.add_argument("--top-k", type=int, default=5)
    p_snapshot = commands.add_parser(
        "snapshot", help="write a consistent snapshot of the index to a file (while serving too)"
    )
    p_snapshot.add_argument("path")
    p_restore = commands.add_parser(
        "restore", help="replace the index with a snapshot (stop the server holding it first)"
    )
    p_restore.add_argument("path")
    p_gateway = commands.add_parser(
        "gateway", help="development only: an Upstash-REST-compatible gateway over a real Redis"
    )
    p_gateway.add_argument("--redis-url", required=True)
    p_gateway.add_argument("--token", required=True)
    p_gateway.add_argument("--host", default="127.0.0.1")
    p_gateway.add_argument("--port", type=int, default=8079)
    p_qdrant = commands.add_parser(
        "qdrant-standin", help="development only: a Qdrant REST stand-in over Qdrant Edge"
    )
    p_qdrant.add_argument("--path", required=True, help="folder of the collections")
    p_qdrant.add_argument("--host", default="127.0.0.1")
    p_qdrant.add_argument("--port", type=int, default=6333)
    p_qdrant.add_argument("--api-key")
    args = parser.parse_args(argv)
    from docent.errors import ConfigurationError

    try:
        if args.command == "serve":
            return serve(args.host, args.port)
        if args.command in ("ingest", "sync"):
            from docent.sites import SiteOptions

            options = SiteOptions(
                site=args.site,
                base_url=args.base_url,
                include=tuple(args.include),
                exclude=tuple(args.exclude),
            )
            return run_sources(args.paths, options, delete=args.command == "sync")
        if args.command == "ask":
            return ask(args.question, args.top_k)
        if args.command == "qdrant-standin":
            from docent.qdrantstandin import serve as serve_qdrant

            serve_qdrant(args.path, args.host, args.port, args.api_key)
            return 0
        if args.command == "snapshot":
            return snapshot(args.path)
        if args.command == "restore":
            return restore(args.path)
        from docent.gateway import serve as serve_gateway

        serve_gateway(args.redis_url, args.token, args.host, args.port)
        return 0
    except ConfigurationError as exc:
        print(f"docent: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
