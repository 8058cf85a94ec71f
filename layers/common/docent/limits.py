"""Sliding-window rate limits.

The algorithm is upstash-ratelimit's sliding window (two fixed windows, the previous one
weighted by how much of it still overlaps the sliding window), so every store, in-process,
TCP Redis or Upstash, admits the same requests. Stores implement `Limiter`; `guarded()` adds
the bounded wait and the fail-open/closed policy around whichever is configured.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from docent.config import RateRule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """The outcome of one limit check; `reset_at` is unix seconds at which the window rolls."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float
    # When a refused caller is admitted again (unix s): often well before `reset_at`, since the
    # previous window's weight fades as the window slides. None: assume `reset_at`.
    admitted_at: float | None = None

    def retry_after(self, now: float | None = None) -> int:
        """Whole seconds to wait before retrying, at least 1."""
        now = time.time() if now is None else now
        at = self.reset_at if self.admitted_at is None else self.admitted_at
        return max(1, math.ceil(at - now))

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after())
        return headers


class Limiter(Protocol):
    """A shared sliding-window counter keyed by identifier."""

    async def hit(self, identifier: str, rule: RateRule) -> Decision:
        """Count one request for `identifier` under `rule` and say whether it is admitted."""
        ...


def sliding_window(
    previous: int, current: int, rule: RateRule, now_ms: int
) -> tuple[bool, int, float]:
    """Decide one request from the two window counts: (admit, remaining-after, reset unix s)."""
    window_ms = rule.window_s * 1000
    elapsed = (now_ms % window_ms) / window_ms
    weighted = math.floor((1 - elapsed) * previous)
    reset_at = ((now_ms // window_ms) + 1) * window_ms / 1000
    if weighted + current >= rule.limit:
        return False, 0, reset_at
    return True, rule.limit - (weighted + current + 1), reset_at


def next_admission(previous: int, current: int, rule: RateRule, now_ms: int) -> float:
    """When a request refused at `now_ms` would be admitted (unix s), if nobody else is counted.

    `sliding_window` admits when floor((1 - elapsed) * previous) + current < limit. Within this
    window that happens once the previous window's weight falls to `limit - current`; if this
    window is full, after the roll, once its own count (now the previous one) has faded enough.
    """
    window_ms = rule.window_s * 1000
    start = now_ms // window_ms * window_ms
    free = rule.limit - current
    if free > 0:
        # floor(x) < free <=> x < free, free being whole: (1 - e) * previous < free.
        elapsed = 1 - free / previous if previous > free else 0.0
        return max(now_ms, start + elapsed * window_ms) / 1000
    return (start + window_ms + (1 - rule.limit / current) * window_ms) / 1000


class MemoryLimiter:
    """In-process store: exact within one process (the embedded default), not across processes."""

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, int], int] = {}
        self._max_keys = max_keys

    async def hit(self, identifier: str, rule: RateRule) -> Decision:
        # No await between read and write: the check-and-count is atomic on the event loop.
        now_ms = int(self._clock() * 1000)
        window = now_ms // (rule.window_s * 1000)
        key = f"{identifier}:{rule}"
        previous = self._counts.get((key, window - 1), 0)
        current = self._counts.get((key, window), 0)
        allowed, remaining, reset_at = sliding_window(previous, current, rule, now_ms)
        if allowed:
            self._counts[(key, window)] = current + 1
            if len(self._counts) > self._max_keys:
                self._evict(window)
            return Decision(allowed, rule.limit, remaining, reset_at)
        admitted_at = next_admission(previous, current, rule, now_ms)
        return Decision(allowed, rule.limit, remaining, reset_at, admitted_at)

    def _evict(self, window: int) -> None:
        """Drop windows older than the previous one (they can no longer count)."""
        for stale in [k for k in self._counts if k[1] < window - 1]:
            del self._counts[stale]


class LimiterUnavailable(Exception):
    """The limit store did not answer within its timeout or refused the connection."""


async def check(limiter: Limiter, identifier: str, rule: RateRule, timeout_s: float) -> Decision:
    """One limit check with a bounded wait; raises `LimiterUnavailable` instead of hanging."""
    try:
        return await asyncio.wait_for(limiter.hit(identifier, rule), timeout_s)
    except Exception as exc:  # any store failure (timeout, refused, protocol) is "unavailable"
        raise LimiterUnavailable(f"limit store: {type(exc).__name__}") from exc
