"""What operators watch: Prometheus metrics at `/metrics` (bundle), and EMF on Lambda.

One facade, called from the request path: requests by route and status, rate-limit rejections,
stream durations, time to first token, tokens in and out with an estimated cost per model,
embedding cache hits and misses, open streams. On Lambda (`AWS_LAMBDA_FUNCTION_NAME` set) the
same figures also go out as CloudWatch Embedded Metric Format through Powertools Metrics,
flushed at the end of each request.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from docent.generation import Usage

# USD per million tokens (input, output); an estimate for dashboards, not a bill.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
}

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Registry:
    """The Prometheus collectors, created on first use (nothing imported at cold start)."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            GCCollector,
            Histogram,
            ProcessCollector,
        )

        self.registry = CollectorRegistry()
        r = self.registry
        # The process's CPU seconds and memory (`process_*`) and the collector's runs by
        # generation (`python_gc_*`): CPU per request is the figure that travels between machines.
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self.requests = Counter(
            "docent_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "docent_request_seconds", "Request latency", ["route"], buckets=_LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.rate_limited = Counter(
            "docent_rate_limited", "Requests refused by a rate limit", ["route"], registry=r
        )
        self.limiter_unavailable = Counter(
            "docent_limiter_unavailable",
            "Limit checks the store could not answer, by the policy applied",
            ["route", "policy"],
            registry=r,
        )
        self.streams = Histogram(
            "docent_stream_seconds", "Chat stream duration", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.first_token = Histogram(
            "docent_time_to_first_token_seconds",
            "From request to the first answer chunk",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "docent_tokens", "Model tokens by model and kind", ["model", "kind"], registry=r
        )
        self.cost = Counter(
            "docent_estimated_cost_usd", "Estimated model cost in USD", ["model"], registry=r
        )
        self.cache = Counter(
            "docent_embedding_cache", "Embedding cache lookups by result", ["result"], registry=r
        )
        self.open_streams = Gauge("docent_open_streams", "Chat streams open now", registry=r)
        self.stream_errors = Counter(
            "docent_stream_errors", "Streams ended by an error event, by code", ["code"], registry=r
        )
        self.insights_failures = Counter(
            "docent_insights_failures",
            "Insights the store did not take in time or refused, by operation",
            ["operation"],
            registry=r,
        )


_registry: _Registry | None = None
_lock = threading.Lock()
_emf: Any = None


class _Discard:
    """Every collector on Lambda, where nothing serves /metrics (EMF carries the figures): it
    keeps nothing, so no request there imports prometheus_client (a cold start's 50 ms)."""

    def __getattr__(self, name: str) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self


_DISCARD = cast(_Registry, _Discard())


def registry() -> _Registry:
    global _registry
    if _on_lambda():
        return _DISCARD
    if _registry is None:
        with _lock:
            if _registry is None:
                _registry = _Registry()
    return _registry


def _on_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def _emf_metrics() -> Any:
    global _emf
    if _emf is None:
        from aws_lambda_powertools import Metrics

        _emf = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Docent"))
    return _emf


def _emf_add(name: str, value: float, unit: str = "Count") -> None:
    if _on_lambda():
        from aws_lambda_powertools.metrics import MetricUnit

        _emf_metrics().add_metric(name=name, unit=getattr(MetricUnit, unit), value=value)


def flush() -> None:
    """Write the request's EMF record (Lambda only); a no-op elsewhere."""
    if _on_lambda() and _emf is not None:
        _emf.flush_metrics()


def request(route: str, status: int, seconds: float) -> None:
    r = registry()
    r.requests.labels(route, str(status)).inc()
    r.latency.labels(route).observe(seconds)
    _emf_add("Requests", 1)
    if status >= 500:
        _emf_add("ServerErrors", 1)


def rate_limited(route: str) -> None:
    registry().rate_limited.labels(route).inc()
    _emf_add("RateLimited", 1)


def limiter_unavailable(route: str, admitted: bool) -> None:
    registry().limiter_unavailable.labels(route, "open" if admitted else "closed").inc()
    _emf_add("LimiterUnavailable", 1)


def stream_opened() -> None:
    registry().open_streams.inc()


def stream_closed(seconds: float, first_token_s: float | None, error: str | None) -> None:
    r = registry()
    r.open_streams.dec()
    r.streams.observe(seconds)
    if first_token_s is not None:
        r.first_token.observe(first_token_s)
        _emf_add("TimeToFirstToken", first_token_s * 1000, "Milliseconds")
    if error:
        r.stream_errors.labels(error).inc()
        _emf_add("StreamErrors", 1)


def usage(model: str, used: Usage, embedding_model: str | None) -> None:
    r = registry()
    r.tokens.labels(model, "prompt").inc(used.prompt_tokens)
    r.tokens.labels(model, "completion").inc(used.completion_tokens)
    price_in, price_out = PRICES.get(model, (0.0, 0.0))
    cost = (used.prompt_tokens * price_in + used.completion_tokens * price_out) / 1e6
    if embedding_model and used.embedding_tokens:
        r.tokens.labels(embedding_model, "embedding").inc(used.embedding_tokens)
        embed_cost = used.embedding_tokens * PRICES.get(embedding_model, (0.0, 0.0))[0] / 1e6
        r.cost.labels(embedding_model).inc(embed_cost)
    r.cost.labels(model).inc(cost)
    _emf_add("PromptTokens", used.prompt_tokens)
    _emf_add("CompletionTokens", used.completion_tokens)


def cache(hits: int, misses: int) -> None:
    r = registry()
    if hits:
        r.cache.labels("hit").inc(hits)
    if misses:
        r.cache.labels("miss").inc(misses)


def synced(counts: dict[str, int]) -> None:
    """One sync run's counts (added, changed, unchanged, deleted) as EMF metrics on Lambda."""
    for name in ("added", "changed", "unchanged", "deleted"):
        _emf_add(f"sync_{name}", float(counts.get(name, 0)))


def insights_failed(operation: str) -> None:
    registry().insights_failures.labels(operation).inc()
    _emf_add("InsightsFailures", 1)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text format of every metric, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry().registry), CONTENT_TYPE_LATEST
