"""`docent sync`: a source's documents follow its files; other sources are never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from docent.config import load_settings
from docent.ingest import DocumentIn
from docent.services import Services
from docent.sites import Plan, Skipped, plan
from docent.sites import sync as sync_module
from docent.sites.sync import Item, LocalTarget, SyncResult, sync
from tests.conftest import ADMIN_KEY, running_docent


def items(site_plan: Plan) -> list[Item]:
    out: list[Item] = []
    for page in site_plan.pages:
        try:
            out.append(site_plan.read(page))
        except Skipped:
            continue
    return out


async def run_sync(services: Services, folder: Path) -> SyncResult:
    site_plan = plan(folder)
    return await sync(LocalTarget(services), site_plan.source, items(site_plan))


async def state(services: Services) -> dict[str, tuple[str | None, int]]:
    """Every stored document: its source and chunk count; and no stray point anywhere."""
    target = LocalTarget(services)
    sources = await target.sources()
    heads, _ = await services.store.documents(1000, None)
    counts = {h.payload["document_id"]: h.payload["chunk_count"] for h in heads}
    for doc_id, count in counts.items():
        assert await services.store.count(doc_id) == count, doc_id
    assert await services.store.total() == sum(counts.values())  # no orphan, no duplicate
    return {doc_id: (sources[doc_id], counts[doc_id]) for doc_id in counts}


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def page(title: str, words: str) -> str:
    return f"# {title}\n\n{words}\n\n## More\n\n{words} again.\n"


async def test_sync_adds_changes_renames_and_deletes(services: Services, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, {"a.md": page("A", "alpha"), "b.md": page("B", "beta"), "c/d.md": page("D", "d")})

    first = await run_sync(services, docs)
    again = await run_sync(services, docs)
    (docs / "a.md").write_text(page("A", "alpha changed"))
    (docs / "b.md").unlink()
    (docs / "c" / "d.md").rename(docs / "c" / "e.md")
    after = await run_sync(services, docs)

    assert (first.added, first.changed, first.unchanged, first.deleted) == (3, 0, 0, 0)
    assert (again.added, again.changed, again.unchanged, again.deleted) == (0, 0, 3, 0)
    assert (after.added, after.changed, after.unchanged, after.deleted) == (1, 1, 0, 2)
    # The ingest counts ride along: every document read, and chunks written only for new text.
    assert (first.documents, again.documents, after.documents) == (3, 3, 2)
    assert first.chunks >= 3 and again.chunks == 0 and after.chunks >= 2
    source = str(docs.resolve())
    assert set(await state(services)) == {"a.md", "c/e.md"}
    assert {s for s, _ in (await state(services)).values()} == {source}


async def test_two_sources_side_by_side(services: Services, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one, {"guide.md": page("One", "first source"), "shared.md": page("S", "one's")})
    write(two, {"other.md": page("Two", "second source"), "shared.md": page("S", "two's")})

    await run_sync(services, one)
    second = await run_sync(services, two)
    (one / "guide.md").unlink()
    after = await run_sync(services, one)
    (two / "other.md").unlink()
    emptied = await run_sync(services, two)

    # shared.md is one's: two's sync leaves it alone and says so.
    assert second.added == 1 and second.skipped == [
        {"id": "shared.md", "reason": f"held by another source: {one.resolve()}"}
    ]
    assert after.deleted == 1
    assert emptied.deleted == 1
    stored = await state(services)
    assert set(stored) == {"shared.md"} and stored["shared.md"][0] == str(one.resolve())


async def test_a_crash_mid_sync_then_a_rerun_ends_exact(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    write(docs, {f"p{i:02}.md": page(f"P{i}", f"page {i} " * 200) for i in range(12)})
    await run_sync(services, docs)
    for i in range(0, 12, 3):
        (docs / f"p{i:02}.md").write_text(page(f"P{i}", f"changed {i} " * 300))
    for i in (1, 4):
        (docs / f"p{i:02}.md").unlink()
    write(docs, {"new.md": page("New", "fresh " * 500)})
    monkeypatch.setattr(sync_module, "BATCH_DOCUMENTS", 3)

    real_upsert = services.store.upsert
    calls = 0

    async def crashing_upsert(points: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            await real_upsert(points[: len(points) // 2])  # half a write, then the crash
            raise RuntimeError("power cut")
        await real_upsert(points)

    monkeypatch.setattr(services.store, "upsert", crashing_upsert)
    with pytest.raises(RuntimeError, match="power cut"):
        await run_sync(services, docs)
    monkeypatch.setattr(services.store, "upsert", real_upsert)
    rerun = await run_sync(services, docs)
    settled = await run_sync(services, docs)

    expected = {p.name for p in docs.glob("*.md")}
    assert set(await state(services)) == expected
    assert rerun.deleted == 2
    assert (settled.added, settled.changed, settled.deleted) == (0, 0, 0)
    assert settled.unchanged == len(expected)


async def test_an_unreadable_file_keeps_its_document(services: Services, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, {"a.md": page("A", "alpha"), "b.md": page("B", "beta")})
    await run_sync(services, docs)
    (docs / "b.md").write_bytes(b"\x00binary now")
    site_plan = plan(docs)
    listed: list[Item] = []
    for p in site_plan.pages:
        try:
            listed.append(site_plan.read(p))
        except Exception as exc:  # what the CLI does: the id and the reason
            listed.append((p.document_id, str(exc)))

    result = await sync(LocalTarget(services), site_plan.source, listed)

    assert result.deleted == 0 and result.skipped[0]["id"] == "b.md"
    assert set(await state(services)) == {"a.md", "b.md"}


async def test_legacy_documents_without_a_source_are_adopted(
    services: Services, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    write(docs, {"a.md": page("A", "alpha")})
    await services.ingestor.ingest([DocumentIn(id="a.md", text=page("A", "alpha"))])

    result = await run_sync(services, docs)

    assert (result.added, result.changed) == (0, 1)
    assert (await state(services))["a.md"][0] == str(docs.resolve())


@pytest.mark.slow
def test_docent_sync_through_a_running_server(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, {"a.md": page("A", "alpha"), "b.md": page("B", "beta")})
    with running_docent(tmp_path / "server") as server:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "DOCENT_URL": server.url,
            "DOCENT_API_KEY": ADMIN_KEY,
            "QDRANT_PATH": str(tmp_path / "unused" / "qdrant"),
        }

        def docent(*args: str) -> dict[str, Any]:
            result = subprocess.run(
                [sys.executable, "-m", "docent.cli", *args],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert "syncing" in result.stderr and "chunks=" in result.stderr  # progress
            return dict(json.loads(result.stdout.strip().splitlines()[-1]))

        first = docent("sync", str(docs))
        (docs / "a.md").unlink()
        second = docent("sync", str(docs))
        with server.admin() as client:
            listed = client.get("/documents").json()["documents"]

    assert first == {"added": 2, "changed": 0, "unchanged": 0, "deleted": 0}
    assert second == {"added": 0, "changed": 0, "unchanged": 1, "deleted": 1}
    assert [(d["id"], d["source"]) for d in listed] == [("b.md", str(docs.resolve()))]


async def test_a_new_base_url_updates_urls_without_embedding_again(
    tmp_path: Path, standin: tuple[str, Any]
) -> None:
    from docent.sites import SiteOptions

    url, state = standin
    services = Services(
        load_settings(
            qdrant_path=str(tmp_path / "qdrant"),
            sample_corpus="",
            openai_base_url=url,
            openai_api_key="test-key",
            embedding_provider="openai",
        )
    )
    docs = tmp_path / "docs"
    write(docs, {f"p{i}.md": page(f"P{i}", f"page {i} words") for i in range(4)})
    try:
        old = plan(docs, SiteOptions(base_url="https://old.example.test/docs"))
        await sync(LocalTarget(services), old.source, items(old))
        requests = len(state.embedding_requests)
        new = plan(docs, SiteOptions(base_url="https://new.example.test/docs"))
        moved = await sync(LocalTarget(services), new.source, items(new))
        heads, _ = await services.store.documents(100, None)
    finally:
        await services.aclose()

    assert requests > 0
    assert moved.changed == 4 and len(state.embedding_requests) == requests  # no new call
    assert {h.payload["url"] for h in heads} == {
        f"https://new.example.test/docs/p{i}.md" for i in range(4)
    }
