"""Schemathesis against the bundled app's OpenAPI schema: no 5xx, no response off its schema."""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from docent.config import load_settings
from docent.services import Services
from functions.bundle import build_app
from tests.conftest import ADMIN_KEY, corpus_documents

_data = tempfile.mkdtemp(prefix="docent-fuzz-")
_settings = load_settings(
    qdrant_path=_data,
    sample_corpus="",
    admin_api_keys=(ADMIN_KEY,),
    rate_limit_anon="1000000/60s",
    rate_limit_key="1000000/60s",
    rate_limit_bad_key="1000000/60s",
)
_app = build_app(_settings, Services(_settings))
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@pytest.fixture(scope="module", autouse=True)
def _corpus() -> None:
    from starlette.testclient import TestClient

    with TestClient(_app) as client:
        response = client.post(
            "/ingest", json={"documents": corpus_documents()}, headers={"X-API-Key": ADMIN_KEY}
        )
        assert response.status_code == 200


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors_and_responses_match_the_schema(case: Any) -> None:
    for headers in ({"X-API-Key": ADMIN_KEY}, {}):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
        if response.status_code < 400:
            case.validate_response(response)
