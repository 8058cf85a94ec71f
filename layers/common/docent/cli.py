"""The `docent` command: serve, ingest, ask, snapshot, restore, gateway.

`ingest`, `ask` and `snapshot` talk to a running server at DOCENT_URL when one answers there
(the embedded store is locked by the process that holds it), else they open the embedded store
themselves. `restore` replaces the store, so it needs it free (no server holding it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BATCH_DOCUMENTS = 50
BATCH_BYTES = 4 * 1024 * 1024


def admin_key_file() -> Path:
    from docent.config import get_settings

    return Path(get_settings().qdrant_path).parent / "admin-key"


def local_admin_key() -> str | None:
    """The key to use for admin routes: DOCENT_API_KEY, else the one `docent serve` generated."""
    key = os.environ.get("DOCENT_API_KEY")
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
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    os.environ["ADMIN_API_KEYS"] = path.read_text().strip()
    print(f"docent: admin key for this server is in {path}", file=sys.stderr)


def serve(host: str | None, port: int | None) -> int:
    import uvicorn

    from docent.config import get_settings

    _ensure_admin_key()
    get_settings.cache_clear()
    settings = get_settings()
    uvicorn.run(
        "functions.bundle:app",
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        # Longer than proxies' idle timeouts (60 s on ALB): else a reused connection can meet
        # the server closing it (a 502 at the proxy, a ReadError at a client), as the soak saw.
        timeout_keep_alive=75,
    )
    return 0


def _server(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url.rstrip("/") + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _batches(documents: Sequence[Any]) -> Iterator[list[Any]]:
    batch: list[Any] = []
    size = 0
    for doc in documents:
        doc_size = len(doc.text.encode())
        if batch and (len(batch) >= BATCH_DOCUMENTS or size + doc_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += doc_size
    if batch:
        yield batch


def ingest(paths: Sequence[str]) -> int:
    from tqdm import tqdm

    from docent.config import get_settings
    from docent.corpus import find_files, read_documents
    from docent.errors import DocentError
    from docent.ingest import IngestResult

    settings = get_settings()
    files = find_files(paths)
    if not files:
        print("docent: no .md/.mdx/.html/.txt/.pdf files found", file=sys.stderr)
        return 1
    try:
        documents = list(read_documents(tqdm(files, desc="reading", unit="file")))
    except DocentError as exc:
        print(f"docent: {exc.message}", file=sys.stderr)
        return 1
    total = IngestResult()
    bar = tqdm(total=len(documents), desc="ingesting", unit="doc")
    if _server(settings.docent_url):
        import httpx

        key = local_admin_key()
        headers = {"X-API-Key": key} if key else {}
        with httpx.Client(base_url=settings.docent_url, headers=headers, timeout=300) as client:
            for batch in _batches(documents):
                body = {"documents": [_as_json(d) for d in batch]}
                response = client.post("/ingest", json=body)
                if response.status_code != 200:
                    bar.close()
                    print(f"docent: {response.status_code} {response.text}", file=sys.stderr)
                    return 1
                for name, value in response.json().items():
                    setattr(total, name, getattr(total, name) + value)
                bar.update(len(batch))
    else:

        async def run() -> None:
            from docent.services import get_services

            services = get_services()
            try:
                for batch in _batches(documents):
                    result = await services.ingestor.ingest(batch)
                    for name, value in result.as_dict().items():
                        setattr(total, name, getattr(total, name) + value)
                    bar.update(len(batch))
            finally:
                await services.aclose()

        try:
            asyncio.run(run())
        except DocentError as exc:
            bar.close()
            return _failed(exc)
    bar.close()
    print(json.dumps(total.as_dict()))
    return 0


def _failed(exc: Exception) -> int:
    """Report a Docent error on stderr (no traceback); the exit status 1."""
    from docent.config import get_settings
    from docent.errors import DocentError, StoreLocked

    message = exc.message if isinstance(exc, DocentError) else str(exc)
    if isinstance(exc, StoreLocked):
        message += f" (QDRANT_PATH={get_settings().qdrant_path})"
    print(f"docent: {message}", file=sys.stderr)
    return 1


def _as_json(doc: Any) -> dict[str, Any]:
    return {"id": doc.id, "text": doc.text, "format": doc.format, "tags": list(doc.tags)}


def ask(question: str, top_k: int) -> int:
    from docent.config import get_settings

    settings = get_settings()
    if _server(settings.docent_url):
        return _ask_server(settings.docent_url, question, top_k)

    async def run() -> None:
        from docent import chat
        from docent.services import get_services

        services = get_services()
        try:
            deadline = chat.deadline_for({}, settings.request_timeout_s)
            prepared = await chat.prepare(
                services, chat.Question(question, top_k=top_k), deadline, "cli"
            )
            async for event in chat.events(services, prepared):
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

    async def run() -> dict[str, Any]:
        from docent.services import get_services

        services = get_services()
        try:
            return await services.store.snapshot(destination)
        finally:
            await services.aclose()

    try:
        result = asyncio.run(run())
    except (DocentError, OSError) as exc:
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

    async def run() -> dict[str, Any]:
        from docent.services import get_services

        services = get_services()
        try:
            return await services.store.restore(source)
        finally:
            await services.aclose()

    try:
        result = asyncio.run(run())
    except DocentError as exc:
        return _failed(exc)
    print(json.dumps(result))
    return 0


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
    args = parser.parse_args(argv)
    from docent.errors import ConfigurationError

    try:
        if args.command == "serve":
            return serve(args.host, args.port)
        if args.command == "ingest":
            return ingest(args.paths)
        if args.command == "ask":
            return ask(args.question, args.top_k)
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
