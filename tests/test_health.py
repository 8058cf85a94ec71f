"""Liveness and readiness."""

from __future__ import annotations

from docent import __version__
from tests.conftest import Docent


def test_liveness_reports_version(docent: Docent) -> None:
    with docent.client() as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


def test_readiness_checks_the_embedded_store(docent: Docent) -> None:
    with docent.client() as client:
        response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["checks"]["vectors"]["ok"] is True
    assert body["checks"]["vectors"]["latency_ms"] >= 0
    assert body["checks"]["disk"]["ok"] is True  # its free space, read without the store
    assert set(body["checks"]) == {"vectors", "disk"}
