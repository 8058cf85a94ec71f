"""The OpenAI SDK client (created once per process) and retries bounded by the request's deadline.

The SDK's own retries know nothing of the time a request has left, so the client is built with
`max_retries=0` and `call()` retries 429, 5xx, timeouts and dropped connections itself: it waits
what `Retry-After` asks (or an exponential backoff with jitter), and gives up at once when that
wait would run past the deadline. Failures become Docent errors with the right status.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from docent.errors import DocentError, Unavailable, UpstreamError, UpstreamTimeout

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from docent.config import Settings

log = logging.getLogger("docent.models")

T = TypeVar("T")

# Per event loop: an httpx pool belongs to the loop that opened it (one loop per process on
# Lambda and under uvicorn; tests and the CLI may run several in turn).
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str | None, str | None, float], AsyncOpenAI]
] = weakref.WeakKeyDictionary()


def client_for(settings: Settings) -> AsyncOpenAI:
    """One `AsyncOpenAI` per endpoint and timeout, reused by every request of the process."""
    key = (settings.openai_base_url, settings.openai_api_key, settings.model_timeout_s)
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(key)
    if client is None:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            # Local servers (llama.cpp, vLLM, Ollama) take any key; the SDK insists on one.
            api_key=settings.openai_api_key or "not-needed",
            base_url=settings.openai_base_url,
            max_retries=0,
            timeout=settings.model_timeout_s,
            http_client=_http_client(),
        )
        clients[key] = client
    return client


def _http_client() -> Any:
    """The SDK's default HTTP client (same limits, proxies from the environment), whose pool
    probes an idle connection's socket only when it is about to be reused.

    The stock pool asks every idle connection `has_expired()` on every pass (each request's
    start and end), and for an idle connection that is a `poll()` on its socket: at 50 open
    streams about 29 probes per request, 9% of the server's CPU samples. Here the pass checks the
    keep-alive expiry only; the socket probe (a server that closed the connection) runs in
    `can_handle_request`, for the connection the pool is about to hand out, and a connection
    found closed is passed over and dropped at the next pass: a request is never sent on it.
    """
    import httpcore2
    import httpx2
    from openai import DefaultAsyncHttpxClient
    from openai._constants import DEFAULT_CONNECTION_LIMITS

    class Connection(httpcore2.AsyncHTTPConnection):
        stale = False

        def has_expired(self) -> bool:
            if self.stale:
                return True
            inner = getattr(self, "_connection", None)
            expire_at = getattr(inner, "_expire_at", False)
            if inner is None or expire_at is False or not inner.is_idle():
                return bool(super().has_expired())
            return expire_at is not None and time.monotonic() > expire_at

        def can_handle_request(self, origin: Any) -> bool:
            if not super().can_handle_request(origin):
                return False
            if self.is_idle() and super().has_expired():
                self.stale = True  # the server closed it (or its keep-alive ran out)
                return False
            return True

    class Pool(httpcore2.AsyncConnectionPool):
        def create_connection(self, origin: Any) -> Any:
            connection = super().create_connection(origin)
            if type(connection) is httpcore2.AsyncHTTPConnection:
                connection.__class__ = Connection
            return connection

    transport = httpx2.AsyncHTTPTransport(limits=DEFAULT_CONNECTION_LIMITS)
    if type(getattr(transport, "_pool", None)) is httpcore2.AsyncConnectionPool:
        transport._pool.__class__ = Pool
    return DefaultAsyncHttpxClient(transport=transport)


def retry_after_s(headers: object) -> float | None:
    """Seconds a 429/503 asks us to wait (`retry-after-ms` or `retry-after`), if it says."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue  # an HTTP date: rare from model servers; fall back to backoff
    return None


def classify(exc: BaseException) -> tuple[bool, float | None, DocentError]:
    """(retryable, server-requested wait, the error to raise if we give up) for an SDK failure."""
    import openai

    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return True, None, UpstreamTimeout("The model server did not answer in time.")
    if isinstance(exc, openai.APIConnectionError):
        return True, None, Unavailable("The model server could not be reached.")
    if isinstance(exc, openai.APIStatusError):
        wait = retry_after_s(exc.response.headers)
        status = exc.status_code
        if status == 429:
            seconds = max(1, round(wait)) if wait is not None else 5
            return (
                True,
                wait,
                Unavailable(
                    "The model server is rate limiting; try again shortly.",
                    headers={"Retry-After": str(seconds)},
                ),
            )
        if status >= 500:
            return True, wait, UpstreamError(f"The model server failed ({status}).")
        return False, None, UpstreamError(f"The model server refused the request ({status}).")
    return False, None, UpstreamError("The model server failed.")


async def call(
    make: Callable[[], Awaitable[T]],
    *,
    deadline: float,
    retries: int,
    what: str,
    base_delay_s: float = 0.25,
) -> T:
    """`await make()` with bounded retries, never past `deadline` (a monotonic time)."""
    attempt = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamTimeout(f"The {what} did not finish in time.")
        try:
            async with asyncio.timeout(remaining):
                return await make()
        except DocentError:
            raise
        except Exception as exc:
            retryable, wait, error = classify(exc)
            if not retryable or attempt >= retries:
                log.warning(
                    "%s failed: %s", what, type(exc).__name__, extra={"attempts": attempt + 1}
                )
                raise error from exc
            delay = (
                wait if wait is not None else base_delay_s * 2**attempt * (0.5 + random.random())
            )
            if time.monotonic() + delay >= deadline:
                log.warning("%s: retry would pass the deadline", what)
                raise error from exc
            attempt += 1
            log.info("%s: retry %d in %.2fs after %s", what, attempt, delay, type(exc).__name__)
            await asyncio.sleep(delay)
