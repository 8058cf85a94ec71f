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
import sys
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
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
    asyncio.AbstractEventLoop, dict[tuple[str | None, str | None, float, str], AsyncOpenAI]
] = weakref.WeakKeyDictionary()


def client_for(settings: Settings) -> AsyncOpenAI:
    """One `AsyncOpenAI` per endpoint, timeout and transport, reused by every request of the
    process."""
    choice = settings.model_http_client
    key = (settings.openai_base_url, settings.openai_api_key, settings.model_timeout_s, choice)
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
            # Chosen once per client: `auto` looks for aiohttp on disk, not on every request.
            http_client=_aiohttp_client() if uses_aiohttp(choice) else _http_client(),
        )
        clients[key] = client
    return client


def uses_aiohttp(choice: str) -> bool:
    """`MODEL_HTTP_CLIENT`: aiohttp when asked, or (`auto`) when it is installed."""
    if choice == "auto":
        import importlib.util

        return importlib.util.find_spec("aiohttp") is not None
    return choice == "aiohttp"


def _aiohttp_client() -> Any:
    """The SDK's aiohttp transport (its documented `DefaultAioHttpClient`): aiohttp parses the
    model's chunked stream in C and hands over everything received in one read, where httpx
    runs h11 and five generator layers per chunk, and the model sends a chunk per token. At 50
    streams on the stand-in: about a quarter less of the server's CPU per token and per request
    (README, Performance). Not in the Lambda layer, which keeps `_http_client`."""
    from openai import DefaultAioHttpClient

    return DefaultAioHttpClient()


async def aclose_clients() -> None:
    """Close this loop's clients (server shutdown): aiohttp warns of a session left open."""
    clients = _clients.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.close()
    for direct in _direct.pop(asyncio.get_running_loop(), {}).values():
        await direct.session.close()


class ModelStatusError(Exception):
    """A model server's answer other than 2xx to a request sent by `post_stream`."""

    def __init__(self, status: int, headers: Any) -> None:
        super().__init__(f"status {status}")
        self.status_code = status
        self.headers = headers


class DirectStream:
    """A streamed answer read straight off aiohttp's response (`post_stream`), with the two
    methods of httpx's response that the answerer reads it by."""

    CHUNK = 16 * 1024

    def __init__(self, answer: Any) -> None:
        self.answer = answer  # aiohttp's ClientResponse

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self.answer.content.iter_chunked(self.CHUNK)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        # Released at the body's end, the connection goes back to the pool; before it, aiohttp
        # closes it, and the model server stops generating.
        self.answer.release()
        await self.answer.wait_for_close()


class _Direct:
    """One aiohttp session per endpoint and loop, with the SDK client's own URL and headers."""

    def __init__(self, client: AsyncOpenAI, timeout_s: float) -> None:
        import aiohttp
        import httpx2
        from openai._constants import DEFAULT_CONNECTION_LIMITS

        self.base = str(client.base_url).rstrip("/")
        headers = {**client.default_headers, **client.auth_headers}
        self.headers = {k: v for k, v in headers.items() if isinstance(v, str)}  # not Omit()
        limits = DEFAULT_CONNECTION_LIMITS
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry or 15,
            ssl=httpx2.create_ssl_context(),  # the SDK's: certifi's CAs, or SSL_CERT_FILE
        )
        self.session = aiohttp.ClientSession(connector=connector)
        # The SDK's one timeout, as its aiohttp transport maps it: waiting for a connection and
        # making it, and each read.
        self.timeout = aiohttp.ClientTimeout(
            connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s
        )


_direct: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _Direct]] = (
    weakref.WeakKeyDictionary()
)


def streams_direct(settings: Settings) -> bool:
    """Whether streamed completions go out on aiohttp straight (`post_stream`)."""
    return uses_aiohttp(settings.model_http_client)


async def post_stream(settings: Settings, path: str, body: dict[str, Any]) -> DirectStream:
    """POST `body` to the model server and return its streamed answer, on aiohttp without the
    SDK's request layers.

    The SDK's custom-request path builds its options, an httpx request (headers and URL parsed
    three times) and an httpx response around aiohttp's: in a client alone, 2.2 to 2.6 ms of CPU
    per request on a slow hour of this kind of machine, against 0.6 to 0.85 ms for aiohttp's
    own. At 50 streams the server's CPU per chat request besides its tokens fell 15% with it
    (README, Performance). The endpoint, key and headers are the SDK client's own
    (`client_for`); a status other than 2xx raises `ModelStatusError`, which `classify` reads as
    it reads the SDK's status errors.
    """
    import orjson

    key = (settings.openai_base_url, settings.openai_api_key, settings.model_timeout_s)
    directs = _direct.setdefault(asyncio.get_running_loop(), {})
    direct = directs.get(key)
    if direct is None:  # the SDK client is asked for its URL and headers once
        direct = directs[key] = _Direct(client_for(settings), settings.model_timeout_s)
    answer = await direct.session.post(
        direct.base + path, data=orjson.dumps(body), headers=direct.headers, timeout=direct.timeout
    )
    if not 200 <= answer.status < 300:
        answer.release()
        raise ModelStatusError(answer.status, answer.headers)
    return DirectStream(answer)


def _http_client() -> Any:
    """The SDK's default HTTP client (same limits, proxies from the environment), whose pool
    probes an idle connection's socket only when it is about to be reused.

    The stock pool asks every idle connection `has_expired()` on every pass (each request's
    start and end), and for an idle connection that is a `poll()` on its socket: at 50 open
    streams about 29 probes per request, 9% of the server's CPU samples. Here the pass checks the
    keep-alive expiry only; the socket probe (a server that closed the connection) runs in
    `can_handle_request`, for the connection the pool is about to hand out, and a connection
    found closed is passed over and dropped at the next pass: a request is never sent on it.

    Its connections are asyncio's own (`_backend`), not anyio's: anyio wraps every read of the
    model's stream in a cancel scope and a loop turn, 10% of the server's CPU at 50 streams.
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
    pool = getattr(transport, "_pool", None)
    if type(pool) is httpcore2.AsyncConnectionPool:
        pool.__class__ = Pool
        pool._network_backend = _backend()
    return DefaultAsyncHttpxClient(transport=transport)


def buffered(response: Any) -> Callable[[], bool] | None:
    """For a streamed response, a check whether its next read will not wait for the network:
    the connection's HTTP/1.1 parser holds more than the CRLF that closes the chunk just read
    (the next chunk, or the body's end), or the server has closed; through aiohttp, never (its
    read takes everything received). None when the response is on neither, so its reads cannot
    be paced."""
    if _aiohttp_answer(response) is not None:
        return nothing_more  # aiohttp's read hands over everything received: one read a frame
    parser = response.stream
    for name in ("_stream", "_httpcore_stream", "_stream", "_connection", "_h11_state"):
        parser = getattr(parser, name, None)
        if parser is None:
            return None
    if not isinstance(getattr(parser, "trailing_data", None), tuple):
        return None

    def more() -> bool:
        data, closed = parser.trailing_data
        return len(data) > 2 or bool(closed)

    return more


def reading_switch(response: Any) -> tuple[Callable[[], None], Callable[[], None]] | None:
    """(pause, resume) for the socket under a streamed response read through aiohttp, else None.

    aiohttp reads its socket as data arrives, whether or not anyone waits: each token of the
    model's stream costs a wake-up, a receive, a parse and a read-timer reset, though chat reads
    the stream at most once a frame. Paused between frames (aiohttp's own flow control, the one
    its reader uses when its buffer fills), the tokens wait in the kernel and come in with one
    receive. httpx's connections read only while a reader waits: nothing to switch.

    `pause` leaves alone a connection the response no longer has: once the body has ended,
    aiohttp hands it back to its pool (another request's, soon)."""
    answer = _aiohttp_answer(response)
    if answer is None or not hasattr(answer, "connection"):
        return None
    paused: list[Any] = []

    def pause() -> None:
        connection = answer.connection  # None once released to the pool
        protocol = getattr(connection, "protocol", None)
        if protocol is None or getattr(protocol, "_reading_paused", True):
            return  # released, or paused already by aiohttp's own flow control
        protocol.pause_reading()
        paused.append(protocol)

    def resume() -> None:
        while paused:
            paused.pop().resume_reading()

    return pause, resume


def _aiohttp_answer(response: Any) -> Any:
    """aiohttp's response under a streamed answer (ours, or the SDK's aiohttp transport's)."""
    if isinstance(response, DirectStream):
        return response.answer
    return getattr(getattr(getattr(response, "stream", None), "_stream", None),
                   "_aiohttp_response", None)  # fmt: skip


def nothing_more() -> bool:
    """A `buffered` check that never asks for another read: the read took all there was (aiohttp),
    or the parser cannot be seen."""
    return False


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

    if isinstance(exc, openai.APITimeoutError | TimeoutError) and not _refused(exc):
        return True, None, UpstreamTimeout("The model server did not answer in time.")
    if isinstance(exc, openai.APIConnectionError) or _connection_error(exc):
        return True, None, Unavailable("The model server could not be reached.")
    if isinstance(exc, openai.APIStatusError | ModelStatusError):
        headers = exc.headers if isinstance(exc, ModelStatusError) else exc.response.headers
        wait = retry_after_s(headers)
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


def _connection_error(exc: BaseException) -> bool:
    """aiohttp's own connection errors (`post_stream`): refused, reset, closed before the
    answer. Its timeouts are `TimeoutError`s, classified before this."""
    aiohttp = sys.modules.get("aiohttp")
    return aiohttp is not None and isinstance(exc, aiohttp.ClientConnectionError)


def _refused(exc: BaseException) -> bool:
    """A "timeout" caused by a connection that failed at once: the SDK's aiohttp transport maps
    every aiohttp connection error (a refused connection too) to httpx's `ConnectTimeout`."""
    seen: set[int] = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


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


def _backend() -> Any:
    """httpcore's network backend on asyncio's transports: TCP connections (TLS started on them
    by the loop) whose reads and writes take a timer only when they have to wait. Unix sockets
    stay with httpcore's own backend."""
    import httpcore2
    from httpcore2 import _utils
    from httpcore2._backends.auto import AutoBackend

    class Protocol(asyncio.Protocol):
        """Bytes received, waiting for a reader; the end of the stream; the write buffer's state."""

        def __init__(self) -> None:
            self.buffer = bytearray()
            self.ended = False
            self.error: BaseException | None = None
            self.waiter: asyncio.Future[None] | None = None
            self.drained: asyncio.Future[None] | None = None
            self.paused = False

        def connection_made(self, transport: Any) -> None:
            # Read only while a reader waits: between reads, what arrives gathers in the socket
            # and comes in with the next read (one callback, not one per token).
            transport.pause_reading()

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            self._wake()

        def eof_received(self) -> bool:
            self.ended = True
            self._wake()
            return False

        def connection_lost(self, exc: BaseException | None) -> None:
            self.ended, self.error = True, exc
            self._wake()
            self.resume_writing()

        def pause_writing(self) -> None:
            self.paused = True

        def resume_writing(self) -> None:
            self.paused = False
            if self.drained is not None and not self.drained.done():
                self.drained.set_result(None)

        def _wake(self) -> None:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)

    async def waited(
        future: asyncio.Future[None], limit_s: float | None, expired: type[Exception]
    ) -> None:
        """`future`, or `expired` raised after `limit_s`: a timer only for a wait that happens."""
        handle = None
        if limit_s is not None:
            handle = asyncio.get_running_loop().call_later(limit_s, _expire, future)
        try:
            await future
        except TimeoutError as exc:
            raise expired(str(exc)) from exc
        finally:
            if handle is not None:
                handle.cancel()

    class Stream(httpcore2.AsyncNetworkStream):
        """A connection whose small writes wait for the next read or a larger write: a request's
        head and body leave in one send (one wake of the server), not two."""

        def __init__(self, transport: Any, protocol: Protocol) -> None:
            self.transport, self.protocol = transport, protocol
            self.held: list[bytes] = []
            self.held_bytes = 0

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
            protocol, transport = self.protocol, self.transport
            if self.held:
                self._flush()
            if not protocol.buffer and not protocol.ended:
                protocol.waiter = asyncio.get_running_loop().create_future()
                transport.resume_reading()
                try:
                    await waited(protocol.waiter, timeout, httpcore2.ReadTimeout)
                finally:
                    protocol.waiter = None
                    if transport.is_reading():
                        transport.pause_reading()
            buffer = protocol.buffer
            if buffer:
                data = bytes(buffer[:max_bytes])
                del buffer[:max_bytes]
                return data
            if protocol.error is not None:
                raise httpcore2.ReadError(str(protocol.error))
            return b""

        def _flush(self) -> None:
            data = b"".join(self.held)
            self.held.clear()
            self.held_bytes = 0
            if not self.transport.is_closing():  # else the read reports the lost connection
                self.transport.write(data)

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
            if not buffer:
                return
            protocol = self.protocol
            if protocol.ended or self.transport.is_closing():
                raise httpcore2.WriteError("The connection is closed.")
            self.held.append(buffer)
            self.held_bytes += len(buffer)
            if self.held_bytes < HOLD_WRITES_BYTES:
                return  # httpcore reads the response next, and the read sends it
            self._flush()
            if protocol.paused:
                protocol.drained = asyncio.get_running_loop().create_future()
                try:
                    await waited(protocol.drained, timeout, httpcore2.WriteTimeout)
                finally:
                    protocol.drained = None
                if protocol.ended:
                    raise httpcore2.WriteError(str(protocol.error or "The connection closed."))

        async def aclose(self) -> None:
            self.held.clear()  # a request given up before its response: nothing to send
            self.transport.close()

        async def start_tls(
            self,
            ssl_context: Any,
            server_hostname: str | None = None,
            timeout: float | None = None,  # noqa: ASYNC109
        ) -> httpcore2.AsyncNetworkStream:
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(timeout):
                    transport = await loop.start_tls(
                        self.transport, self.protocol, ssl_context, server_hostname=server_hostname
                    )
            except TimeoutError as exc:
                self.transport.close()
                raise httpcore2.ConnectTimeout(str(exc)) from exc
            except OSError as exc:  # ssl.SSLError and ConnectionError are OSErrors too
                self.transport.close()
                raise httpcore2.ConnectError(str(exc)) from exc
            return Stream(transport, self.protocol)

        def get_extra_info(self, info: str) -> Any:
            if info == "is_readable":  # the server closed it (or sent what nobody asked for)
                protocol = self.protocol
                return bool(protocol.buffer or protocol.ended) or _utils.is_socket_readable(
                    self.transport.get_extra_info("socket")
                )
            name = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
            return self.transport.get_extra_info(name)

    class Backend(httpcore2.AsyncNetworkBackend):
        def __init__(self) -> None:
            self.fallback = AutoBackend()

        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,  # noqa: ASYNC109
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore2.AsyncNetworkStream:
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(timeout):
                    transport, protocol = await loop.create_connection(
                        Protocol,
                        host,
                        port,
                        local_addr=(local_address, 0) if local_address else None,
                    )
            except TimeoutError as exc:
                raise httpcore2.ConnectTimeout(str(exc)) from exc
            except OSError as exc:
                raise httpcore2.ConnectError(str(exc)) from exc
            sock = transport.get_extra_info("socket")
            for option in socket_options or ():
                sock.setsockopt(*option)
            return Stream(transport, protocol)

        async def connect_unix_socket(
            self,
            path: str,
            timeout: float | None = None,  # noqa: ASYNC109
            socket_options: Any = None,
        ) -> httpcore2.AsyncNetworkStream:
            return await self.fallback.connect_unix_socket(path, timeout, socket_options)

        async def sleep(self, seconds: float) -> None:
            await asyncio.sleep(seconds)

    return Backend()


# Writes below this size wait for the connection's next read (see `_backend`'s `Stream`).
HOLD_WRITES_BYTES = 64 * 1024


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
