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
    """Bounded LRU with per-key expiry: the embedded default, private to one process."""

    def __init__(self, max_items: int = 50_000, clock: Callable[[], float] = time.monotonic):
        self._items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._max_items = max_items
        self._clock = clock

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now = self._clock()
        out: list[bytes | None] = []
        for key in keys:
            item = self._items.get(key)
            if item is None or (item[1] and item[1] <= now):
                self._items.pop(key, None)
                out.append(None)
                continue
            self._items.move_to_end(key)
            out.append(item[0])
        return out

    async def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        expires = self._clock() + ttl_s if ttl_s else 0.0
        for key, value in items.items():
            self._items[key] = (value, expires)
            self._items.move_to_end(key)
        while len(self._items) > self._max_items:
            self._items.popitem(last=False)

    async def ping(self) -> None:
        return None
