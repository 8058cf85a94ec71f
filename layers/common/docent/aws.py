"""Lambda entry points: HTTP events through Mangum, S3 and SQS-wrapped S3 events for ingest.

`http_handler(app)` serves API Gateway HTTP API (payload v2) and function URL events with Mangum
(buffered: the whole response at once). Streaming chat on Lambda runs the same ASGI app behind
the Lambda Web Adapter instead (functions/chat/run.sh). Every invocation logs through
Powertools Logger with the Lambda context and the request id as correlation id.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from docent.logs import get_logger

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from docent.services import Services

Handler = Callable[[dict[str, Any], Any], Any]
log = logging.getLogger("docent.aws")

# One loop per container for the S3 path: clients created on it are reused by warm invocations.
_loop: asyncio.AbstractEventLoop | None = None


def _run(coroutine: Any) -> Any:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(coroutine)


def http_handler(app: ASGIApp) -> Handler:
    """A Lambda handler for HTTP events over the app (no lifespan: clients are created lazily)."""
    from mangum import Mangum

    mangum = Mangum(app, lifespan="off")  # type: ignore[arg-type]
    logger = get_logger()

    @logger.inject_lambda_context(correlation_id_path="requestContext.requestId", clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> Any:
        return mangum(event, context)

    return handler


class AdapterContext:
    """The Lambda context the Web Adapter forwards as the `x-amzn-lambda-context` header: the
    invocation's request id and deadline, so the adapter path logs and answers with Lambda's
    request id and bounds its work by the invocation's remaining time, as Mangum's path does."""

    def __init__(self, aws_request_id: str, deadline_ms: int | None) -> None:
        self.aws_request_id = aws_request_id
        self.deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        import time

        if self.deadline_ms is None:
            return 900_000  # Lambda's longest timeout: no tighter bound known
        return max(0, int(self.deadline_ms - time.time() * 1000))


def adapter_context(headers: Mapping[str, str]) -> AdapterContext | None:
    """The forwarded Lambda context, read only inside Lambda (where the adapter sets the header
    on every request, replacing any a client sent); elsewhere a client could forge it."""
    from docent.auth import adapter_header

    context = adapter_header(headers, "x-amzn-lambda-context")
    if context is None or not isinstance(context.get("request_id"), str):
        return None
    deadline = context.get("deadline", context.get("deadline_ms"))
    return AdapterContext(context["request_id"], int(deadline) if deadline else None)


def is_storage_event(event: Any) -> bool:
    """True for S3 notifications and SQS batches (which carry S3 notifications)."""
    records = event.get("Records") if isinstance(event, dict) else None
    return bool(records) and isinstance(records, list) and "eventSource" in records[0]


class RecordsFailed(Exception):
    """Some records of a direct S3 invocation failed: the invocation fails, so Lambda retries
    it (S3 invokes asynchronously); the records that succeeded are unchanged on the retry."""

    def __init__(self, processed: list[dict[str, Any]], failed: list[dict[str, str]]) -> None:
        self.processed = processed
        self.failed = failed
        keys = ", ".join(f"{f['key']} ({f['error']})" for f in failed)
        super().__init__(f"{len(failed)} of {len(failed) + len(processed)} records failed: {keys}")


def storage_handler(services_factory: Callable[[], Services]) -> Handler:
    """Ingest S3 objects named by S3 events, directly or in SQS messages.

    With SQS, a bad object fails its own message (partial batch response) and is retried or
    dead-lettered; the rest of the batch is committed. A direct S3 invocation processes every
    record, logs each failure and then fails (`RecordsFailed`) if any record did.
    """
    logger = get_logger()

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> Any:
        services = services_factory()
        source = event["Records"][0].get("eventSource")
        if source == "aws:sqs":
            return _sqs(event, context, services)
        return _s3(event, services)

    return handler


def is_sync_event(event: Any) -> bool:
    """True for a scheduled sync: `{"sync_source": "<sitemap or page URL>"}`."""
    return isinstance(event, dict) and isinstance(event.get("sync_source"), str)


def sync_handler(services_factory: Callable[[], Services]) -> Handler:
    """Sync the web source a schedule names (its fixed input); counts go to logs and EMF.

    A source that cannot be synced (refused, unreachable) raises after logging, so the run
    shows as a failed invocation.
    """
    logger = get_logger()

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> Any:
        from docent import metrics
        from docent.sites.fetch import Policy, sync_web

        services = services_factory()
        source = event["sync_source"]
        try:
            result = _run(sync_web(services, source, Policy.from_settings(services.settings)))
        except Exception as exc:
            log.error("sync failed", extra={"source": source, "error": _describe(exc)})
            raise
        counts = {k: v for k, v in result.as_dict().items() if k != "skipped"}
        log.info("sync done", extra={"source": source, "skipped": len(result.skipped), **counts})
        for item in result.skipped:
            log.warning("sync skipped a page", extra={"source": source, **item})
        metrics.synced(counts)
        metrics.flush()
        return {"source": source, **counts, "skipped": result.skipped}

    return handler


def _s3(event: dict[str, Any], services: Services) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.data_classes import S3Event

    done: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for record in S3Event(event).records:
        key = unquote_plus(record.s3.get_object.key)
        try:
            done.append(_apply(record.event_name, record.s3.bucket.name, key, services))
        except Exception as exc:
            log.warning("s3 object failed", extra={"key": key, "error": type(exc).__name__})
            failed.append({"key": key, "error": _describe(exc)})
    if failed:
        raise RecordsFailed(done, failed)
    return {"processed": done, "failed": failed}


def _sqs(event: dict[str, Any], context: Any, services: Services) -> Any:
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes import S3Event
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    def record_handler(record: SQSRecord) -> list[dict[str, Any]]:
        body = record.json_body
        if not isinstance(body, dict) or body.get("Event") == "s3:TestEvent":
            return []  # S3 sends a test message when a notification is configured
        return [
            _apply(
                r.event_name,
                r.s3.bucket.name,
                unquote_plus(r.s3.get_object.key),
                services,
            )
            for r in S3Event(body).records
        ]

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


def _apply(event_name: str, bucket: str, key: str, services: Services) -> dict[str, Any]:
    """Ingest (ObjectCreated) or delete (ObjectRemoved) the document whose id is the key."""
    if event_name.startswith("ObjectRemoved"):
        removed = _run(services.ingestor.delete(key))
        return {"key": key, "deleted_chunks": removed}
    data = read_object(bucket, key, services.settings.max_body_bytes)
    from docent.corpus import document_from_bytes

    document = document_from_bytes(data, key, key)
    result = _run(services.ingestor.ingest([document]))
    return {"key": key, "chunks": result.chunks, "unchanged": result.unchanged}


_s3_client: Any = None


def read_object(bucket: str, key: str, max_bytes: int) -> bytes:
    """The object's bytes, refused before download when larger than `max_bytes`."""
    global _s3_client
    from docent.errors import DocumentError, PayloadTooLarge

    if _s3_client is None:
        import boto3  # in the Lambda runtime; AWS_ENDPOINT_URL_S3 points it elsewhere locally
        from botocore.config import Config

        _s3_client = boto3.client(
            "s3",
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or None,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3}),
        )
    response = _s3_client.get_object(Bucket=bucket, Key=key)
    size = int(response.get("ContentLength") or 0)
    if size > max_bytes:
        response["Body"].close()
        raise PayloadTooLarge(f"s3://{bucket}/{key} is {size} bytes; the limit is {max_bytes}.")
    data: bytes = response["Body"].read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"s3://{bucket}/{key} exceeds {max_bytes} bytes.")
    if not data:
        raise DocumentError(f"s3://{bucket}/{key} is empty.")
    return data


def reset_s3_client() -> None:
    """Forget the cached client (tests that point AWS_ENDPOINT_URL_S3 at a new server)."""
    global _s3_client
    _s3_client = None


def _describe(exc: Exception) -> str:
    from docent.errors import DocentError

    return exc.message if isinstance(exc, DocentError) else type(exc).__name__


# Secrets from SSM Parameter Store or Secrets Manager (read by Settings at startup): Powertools'
# parameters utility caches each value for SECRETS_MAX_AGE_S, so a settings reload after a
# SnapStart restore reads again only values older than that. Every read is bounded: two attempts
# of at most SECRETS_CALL_S each, and SECRETS_WAIT_S for all of them together.
SECRETS_MAX_AGE_S = 300
SECRETS_CALL_S = 2.0
SECRETS_WAIT_S = 5.0
_providers: dict[str, Any] = {}


def _provider(kind: str) -> Any:
    if kind not in _providers:
        import boto3  # in the Lambda runtime; AWS_ENDPOINT_URL points it elsewhere locally
        from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider
        from botocore.config import Config

        config = Config(
            connect_timeout=SECRETS_CALL_S,
            read_timeout=SECRETS_CALL_S,
            retries={"mode": "standard", "total_max_attempts": 2},
        )
        client = boto3.session.Session().client(kind, config=config)
        provider = SSMProvider if kind == "ssm" else SecretsProvider
        _providers[kind] = provider(boto3_client=client)
    return _providers[kind]


def reset_secret_clients() -> None:
    """Close and forget the secrets' clients (SnapStart: no socket goes into the snapshot)."""
    for provider in _providers.values():
        provider.client.close()
    _providers.clear()


def _read_secret(kind: str, name: str) -> str:
    provider = _provider(kind)
    if kind == "ssm":
        value = provider.get(name, max_age=SECRETS_MAX_AGE_S, decrypt=True)
    else:
        value = provider.get(name, max_age=SECRETS_MAX_AGE_S)
    return value.decode() if isinstance(value, bytes) else str(value)


def read_secrets(
    references: Mapping[str, tuple[str, str]],
) -> tuple[dict[str, str], dict[str, str]]:
    """Read each `key -> (kind, name)` (kind `ssm`: a parameter, decrypted; `secretsmanager`:
    a secret's string) at once, within SECRETS_WAIT_S: (values, key -> why it was not read)."""
    from concurrent.futures import ThreadPoolExecutor, wait

    values: dict[str, str] = {}
    failures: dict[str, str] = {}
    if not references:
        return values, failures
    # The clients first, here: importing boto3 and loading its service models is no network
    # wait, and on a slow cold start took most of the window the calls themselves are given.
    for kind, _ in references.values():
        _provider(kind)
    pool = ThreadPoolExecutor(max_workers=len(references), thread_name_prefix="docent-secrets")
    futures = {
        key: pool.submit(_read_secret, kind, name) for key, (kind, name) in references.items()
    }
    wait(futures.values(), timeout=SECRETS_WAIT_S)
    pool.shutdown(wait=False, cancel_futures=True)
    for key, future in futures.items():
        kind, name = references[key]
        where = "SSM parameter" if kind == "ssm" else "Secrets Manager secret"
        if not future.done():
            failures[key] = f"{where} {name} did not answer within {SECRETS_WAIT_S:g} s"
        elif future.exception() is not None:
            failures[key] = f"{where} {name} could not be read: {future.exception()}"
        elif not future.result().strip():
            failures[key] = f"{where} {name} is empty"
        else:  # a newline pasted with the value would break a key or a token
            values[key] = future.result().strip()
    return values, failures
