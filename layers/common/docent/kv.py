"""A small key-value store protocol (the embedding cache lives on it) and its in-process backend."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol


class KeyValueStore(Protocol):
    """Bytes by string key with a time to live; shared across processes in production."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for `keys`, in order; None where absent or expired."""
        ...

    async def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        """Store every item with the given time to live (0: no expiry)."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot be reached."""
        ...


class MemoryStore:
    """Bounded LRU with per-key expiry: the embedded default, private to one process.

    Bounded by count and by bytes: a 1,536-dimension embedding is 6 KB, so a count alone would
    let a long-running server grow to hundreds of MB of cached vectors.
    """

    def __init__(
        self,
        max_items: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= len(item[0])

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        out: list[bytes | None] = []
        for key in keys:
            item = self._items.get(key)
            if item is None or (item[1] and item[1] <= now):
                self._drop(key)
                out.append(None)
                continue
            self._items.move_to_end(key)
            out.append(item[0])
        return out

    async def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        expires = self._clock() + ttl_s if ttl_s else 0.0
        for key, value in items.items():
            if len(value) > self._max_bytes:
                continue  # larger than the whole cache: not worth evicting everything for
            self._drop(key)
            self._items[key] = (value, expires)
            self._bytes += len(value)
        while len(self._items) > self._max_items or self._bytes > self._max_bytes:
            _, (value, _) = self._items.popitem(last=False)
            self._bytes -= len(value)

    async def ping(self) -> None:
        return None
