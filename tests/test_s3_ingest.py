"""S3 and SQS-wrapped S3 ingest against a local S3-compatible endpoint (moto's server mode)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.lambdaruntime import moto_server
from tests.test_lambda import LambdaContext, event, handler_module, lambda_env  # noqa: F401

pytestmark = pytest.mark.services

GOOD = b"# Getting started\n\nInstall Docent with `make run`.\n\n## Next\n\nIngest your docs."


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, lambda_env: Path) -> Any:  # noqa: F811
    import boto3

    from docent.aws import reset_s3_client

    for name, value in {
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    reset_s3_client()
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="docent-docs")
    s3.put_object(Bucket="docent-docs", Key="guide/getting started.md", Body=GOOD)
    s3.put_object(Bucket="docent-docs", Key="broken/scan.pdf", Body=b"%PDF-1.7 not really a pdf")
    yield s3
    for item in s3.list_objects_v2(Bucket="docent-docs").get("Contents", []):
        s3.delete_object(Bucket="docent-docs", Key=item["Key"])
    s3.delete_bucket(Bucket="docent-docs")
    reset_s3_client()


def documents() -> list[str]:
    listing = handler_module("ingest").handler(event("documents.json"), LambdaContext())
    return [d["id"] for d in json.loads(listing["body"])["documents"]]


def test_an_s3_event_ingests_the_object_under_its_key(bucket: Any) -> None:
    result = handler_module("ingest").handler(event("ingest-s3.json"), LambdaContext())
    assert result["failed"] == []
    assert result["processed"][0]["key"] == "guide/getting started.md"
    assert result["processed"][0]["chunks"] >= 1
    assert documents() == ["guide/getting started.md"]
    again = handler_module("ingest").handler(event("ingest-s3.json"), LambdaContext())
    assert again["processed"][0]["unchanged"] == 1  # a redelivered event changes nothing


def test_sqs_batch_reports_only_the_broken_object_as_failed(bucket: Any) -> None:
    result = handler_module("ingest").handler(event("ingest-sqs.json"), LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert documents() == ["guide/getting started.md"]


def test_object_removed_deletes_the_document(bucket: Any) -> None:
    handler_module("ingest").handler(event("ingest-s3.json"), LambdaContext())
    removed = event("ingest-s3.json")
    removed["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    result = handler_module("ingest").handler(removed, LambdaContext())
    assert result["processed"][0]["deleted_chunks"] >= 1
    assert documents() == []


def test_a_missing_or_oversized_object_fails_its_record(
    bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "1024")
    from docent.config import get_settings

    get_settings.cache_clear()  # the handler's services follow: built anew from these settings
    bucket.put_object(Bucket="docent-docs", Key="guide/getting started.md", Body=GOOD * 40)
    missing = event("ingest-s3.json")
    missing["Records"].append(json.loads(json.dumps(missing["Records"][0])))
    missing["Records"][1]["s3"]["object"]["key"] = "nope.md"
    from docent.aws import RecordsFailed

    # Every record is tried, then the invocation fails, so Lambda retries it.
    with pytest.raises(RecordsFailed) as caught:
        handler_module("ingest").handler(missing, LambdaContext())
    assert caught.value.processed == []
    assert [f["key"] for f in caught.value.failed] == ["guide/getting started.md", "nope.md"]
    assert "limit" in caught.value.failed[0]["error"]
