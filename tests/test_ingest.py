"""Ingestion through real HTTP: idempotency, replacement, deletion, listing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docent import sparse
from docent.edge import EdgeStore
from docent.ingest import DocumentIn, Ingestor
from docent.vectors import Query, SearchFilter, chunk_point_id
from tests.conftest import Docent, corpus_documents, parse_sse


def count_via_api(docent: Docent) -> dict[str, int]:
    with docent.admin() as client:
        listing = client.get("/documents").json()
    return {d["id"]: d["chunks"] for d in listing["documents"]}


def test_reingesting_unchanged_documents_is_a_no_op(docent: Docent) -> None:
    first = docent.ingest(corpus_documents())
    written = docent.services.ingestor.counters.points_written
    listing = count_via_api(docent)

    second = docent.ingest(corpus_documents())

    assert first["documents"] == 3 and first["chunks"] > 3 and first["unchanged"] == 0
    assert second == {"documents": 3, "chunks": 0, "unchanged": 3, "deleted_chunks": 0}
    assert docent.services.ingestor.counters.points_written == written
    assert count_via_api(docent) == listing
    assert sum(listing.values()) == first["chunks"]


def test_a_changed_document_replaces_its_old_chunks(docent: Docent) -> None:
    old = "# Colours\n\n" + "\n\n".join(
        f"## Part {i}\n\nThe walrus paragraph {i}." for i in range(8)
    )
    new = "# Colours\n\nThe pelican replaced everything."
    docent.ingest([{"id": "doc.md", "text": old, "url": "https://x.test/doc"}])
    before = count_via_api(docent)["doc.md"]

    result = docent.ingest([{"id": "doc.md", "text": new, "url": "https://x.test/doc"}])

    assert before > 1
    assert result["chunks"] == 1 and result["deleted_chunks"] == before - 1
    assert count_via_api(docent) == {"doc.md": 1}
    with docent.client() as client:
        walrus = parse_sse(client.post("/chat", json={"question": "walrus paragraph"}).text)
        pelican = parse_sse(client.post("/chat", json={"question": "pelican"}).text)
    assert walrus[0]["sources"] == []
    assert pelican[0]["sources"][0]["document_id"] == "doc.md"


def test_deleting_a_document_removes_every_chunk(docent: Docent) -> None:
    docent.ingest(corpus_documents())
    before = count_via_api(docent)

    with docent.admin() as client:
        deleted = client.delete("/documents/limits.md")
        again = client.delete("/documents/limits.md")

    assert deleted.status_code == 200
    assert deleted.json() == {"document_id": "limits.md", "deleted_chunks": before["limits.md"]}
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "not_found"
    assert set(count_via_api(docent)) == {"install.md", "billing.md"}
    with docent.client() as client:
        events = parse_sse(client.post("/chat", json={"question": "sliding window 429"}).text)
    assert all(s["document_id"] != "limits.md" for s in events[0]["sources"])


def test_listing_shows_document_metadata(docent: Docent) -> None:
    docent.ingest(corpus_documents())
    with docent.admin() as client:
        listing = client.get("/documents").json()

    by_id = {d["id"]: d for d in listing["documents"]}
    assert by_id["install.md"]["title"] == "Installing Acme"
    assert by_id["install.md"]["url"] == "https://docs.acme.test/install"
    assert by_id["limits.md"]["tags"] == ["api", "limits"]
    assert len(by_id["billing.md"]["content_hash"]) == 64


def test_a_bad_document_fails_the_request_and_writes_nothing(docent: Docent) -> None:
    with docent.admin() as client:
        response = client.post(
            "/ingest",
            json={"documents": [{"id": "ok.md", "text": "# Fine"}, {"id": "ok.md", "text": "dup"}]},
        )
        listing = client.get("/documents").json()

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_document"
    assert listing["documents"] == []


async def test_a_documents_own_fields_ride_on_its_head_alone(tmp_path: Path) -> None:
    """`format`, `chunk_count`, `ingested_at` and `metadata` are on the head (the listing reads
    them there), not on the other chunks (Edge converts each payload value, a string for
    several µs); the fields searches read and filter on stay on every chunk."""
    store = EdgeStore(str(tmp_path / "edge"))
    ingestor = Ingestor(store, None, chunk_tokens=64, overlap_tokens=8, model=None)
    text = "# Walrus\n\n" + "\n\n".join(f"## Part {i}\n\n" + "Tusks and whiskers. " * 30
                                        for i in range(4))  # fmt: skip
    document = DocumentIn(id="walrus.md", text=text, format="markdown", tags=("zoo",),
                          metadata={"owner": "keeper"})  # fmt: skip
    result = await ingestor.ingest([document])
    digest = ingestor.content_hash(document)
    ids = [chunk_point_id("walrus.md", digest, p) for p in range(result.chunks)]
    points = {int(h.payload["position"]): h.payload for h in await store.retrieve(ids)}
    assert len(points) == result.chunks > 3
    own = {"format", "chunk_count", "ingested_at", "metadata"}
    head = points.pop(0)
    assert own <= set(head) and head["chunk_count"] == result.chunks
    assert head["format"] == "markdown" and head["metadata"] == {"owner": "keeper"}
    for payload in points.values():
        assert not own & set(payload)
        assert {"document_id", "text", "title", "tags", "content_hash", "section"} <= set(payload)
    # A tag filter still reaches the body chunks, and the listing still shows the document.
    hits = await store.search(
        Query(sparse.encode_query("tusks whiskers"), filter=SearchFilter(tags=("zoo",)), limit=20)
    )
    assert {int(h.payload["position"]) for h in hits} == set(range(result.chunks))
    (listed,), _ = await store.documents(10, None)
    assert listed.payload["chunk_count"] == result.chunks
    await store.aclose()


# What the fixture documents turn into (every point's payload and sparse vector), hashed, for each
# PIPELINE_VERSION. A change to parsing, chunking, the payload or BM25's analysis changes the
# digest; it must come with a new PIPELINE_VERSION, or stores keep the old points of every
# document that did not change (a re-ingest skips them by their content hash).
PIPELINE_DIGESTS = {2: "551b88499fb335b6", 3: "551b88499fb335b6", 4: "551b88499fb335b6"}


def test_what_a_document_turns_into_changes_only_with_the_pipeline_version() -> None:
    import hashlib
    import json

    from docent.ingest import PIPELINE_VERSION

    # GIVEN the fixture corpus (markdown) and a Sphinx-shaped HTML reference page
    fixtures = Path(__file__).parent / "fixtures"
    corpus = sorted((fixtures / "corpus").glob("*.md"))
    documents = [DocumentIn(id=p.name, text=p.read_text()) for p in corpus]
    html = (fixtures / "documents" / "reference.html").read_text()
    documents.append(DocumentIn(id="reference.html", text=html, format="html"))
    # WHEN each is prepared for the store as ingest prepares it
    store: Any = None  # preparing writes nothing
    ingestor = Ingestor(store, None, chunk_tokens=350, overlap_tokens=50, model=None)
    points = []
    for document in documents:
        for point in ingestor._prepare(document, "hash", 0).points:
            payload = {k: v for k, v in point.payload.items() if k != "ingested_at"}
            points.append(
                [payload, point.sparse.indices, [round(v, 6) for v in point.sparse.values]]
            )
    digest = hashlib.sha256(json.dumps(points, sort_keys=True).encode()).hexdigest()[:16]
    # THEN they are what this PIPELINE_VERSION made of them
    assert PIPELINE_DIGESTS.get(PIPELINE_VERSION) == digest, (
        f"What documents turn into changed ({digest}): bump PIPELINE_VERSION in ingest.py and "
        "add the new digest here"
    )
