"""`docent serve`'s HTTP protocols: uvicorn's httptools or h11, bounding slow and greedy clients.

uvicorn bounds only the idle time between requests: a client that sends half a request head,
a body a byte at a time, or nothing at all holds its connection (and a task) for as long as
it likes, and one address can open thousands. Here each connection must deliver a request
head within `header_timeout_s` of its first byte (or of opening), and the body within
`body_timeout_s` of the head, else it is closed; and each peer address holds at most
`max_per_client` connections, further ones being closed at once.

The bounds are one mixin over either of uvicorn's parsers: httptools (C, the faster per streamed
token, used when installed: requirements-serve.txt) or h11 (pure Python, always there).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from docent.config import Settings

log = logging.getLogger("docent")


class _Bounds:
    """Read deadlines and a per-peer connection cap over a uvicorn HTTP protocol (put first)."""

    if TYPE_CHECKING:  # provided by the uvicorn protocol this is mixed into
        cycle: Any
        client: Any
        transport: Any
        loop: Any

    header_timeout_s: ClassVar[float] = 10.0
    body_timeout_s: ClassVar[float] = 60.0
    max_per_client: ClassVar[int] = 0  # 0: no cap
    open_by_peer: ClassVar[Counter[str]] = Counter()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._watched: Any = None  # the cycle current when the deadline was set
        self._peer: str | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if self.client:
            self._peer = self.client[0]
            self.open_by_peer[self._peer] += 1
            if self.max_per_client and self.open_by_peer[self._peer] > self.max_per_client:
                log.debug("closing a connection over the per-client cap")
                transport.close()
                return
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._peer is not None:
            self.open_by_peer[self._peer] -= 1
            if self.open_by_peer[self._peer] <= 0:
                del self.open_by_peer[self._peer]
            self._peer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not before and cycle is not None:
            # A new request head arrived: its body (if any) is now on the clock.
            if cycle.more_body:
                self._arm(self.body_timeout_s, cycle, "body")
            else:
                self._cancel()
        elif cycle is not None and self._watched is cycle and not cycle.more_body:
            self._cancel()  # the body is complete: the app takes its own time
        elif (cycle is None or cycle.response_complete) and self._deadline is None:
            self._expect_head()  # the first bytes of the next request on a kept-alive line

    def _expect_head(self) -> None:
        self._arm(self.header_timeout_s, self.cycle, "head")

    def _arm(self, delay: float, watched: Any, phase: str) -> None:
        self._cancel()
        self._watched = watched
        self._deadline = self.loop.call_later(delay, self._expire, watched, phase)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._watched = None

    def _expire(self, watched: Any, phase: str) -> None:
        self._deadline = None
        cycle = self.cycle
        if phase == "head" and cycle is not watched and cycle is not None:
            return  # a head arrived meanwhile (its body deadline was set then)
        if phase == "body" and (cycle is not watched or not cycle.more_body):
            return
        if not self.transport.is_closing():
            log.info("closing a slow client", extra={"phase": phase})
            self.transport.close()


class BoundedH11Protocol(_Bounds, H11Protocol):
    """h11 with read deadlines and a per-peer connection cap."""


class _FromSettings(_Bounds):
    """The bounds from Settings, read once per class.

    Behind a trusted proxy (`TRUSTED_PROXY_HOPS` > 0) every client shares the proxy's address,
    so there the per-address cap is left to the proxy.
    """

    configured: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        if not cls.configured:
            from docent.config import get_settings

            settings = get_settings()
            cls.header_timeout_s = settings.header_timeout_s
            cls.body_timeout_s = settings.body_timeout_s
            cls.max_per_client = (
                0 if settings.trusted_proxy_hops else settings.max_connections_per_client
            )
            cls.configured = True
        super().__init__(*args, **kwargs)


class SettingsBoundedH11Protocol(_FromSettings, H11Protocol):
    """`uvicorn --http docent.serving:SettingsBoundedH11Protocol`."""


def _httptools_protocol() -> type[Any] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed: h11 only
        return None

    class SettingsBoundedHttpToolsProtocol(_FromSettings, HttpToolsProtocol):
        """`uvicorn --http docent.serving:SettingsBoundedHttpToolsProtocol`."""

    return SettingsBoundedHttpToolsProtocol


SettingsBoundedHttpToolsProtocol = _httptools_protocol()


# The young generation's threshold in a server: collected every 10,000 net allocations of
# containers instead of CPython's 700. A chat request allocates and frees hundreds, so at 700 the
# collector ran every few requests, each run scanning the open streams' live state again.
GEN0_THRESHOLD = 10_000


def settle_heap(settings: Settings) -> int:
    """After a server's start-up: import what the first request of every route imports, build
    the token encoding where a model is called, then freeze the heap and raise the young
    generation's threshold; returns the number of objects frozen.

    What start-up built (modules, the app, the encoding's rank table of 200,000 entries) lives as
    long as the process. Left to the collector it was scanned again by every full collection:
    in `docent serve` after an ingest, one took about 90 ms of the loop (every stream paused)
    while 50 streams were open (README, Performance). Frozen, no collection scans it."""
    import gc
    import importlib

    from docent import modelclient, snapstart

    model = settings.llm_configured
    for function in ("chat", "ingest", "health"):
        snapstart.warm(function, settings, encoding=model)
    if model and modelclient.uses_aiohttp(settings.model_http_client):
        importlib.import_module("aiohttp")
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
    return gc.get_freeze_count()


def http_protocol() -> str:
    """The bounded protocol `docent serve` uses: httptools' when installed, else h11's."""
    from importlib.util import find_spec

    fast = SettingsBoundedHttpToolsProtocol is not None and find_spec("httptools") is not None
    name = "SettingsBoundedHttpToolsProtocol" if fast else "SettingsBoundedH11Protocol"
    return f"docent.serving:{name}"
