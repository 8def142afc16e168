"""A bounded, time-limited map: the reply router's memory of recent command results.

Entries expire ``ttl_s`` after they were last stored; when the map is full the oldest entry is
dropped. Both bounds matter: the size bound caps memory under a burst, the TTL keeps a result
answerable by WatchCommand "for a while" but not forever. Not thread-safe: the owner uses it
from the event loop only.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Insertion-ordered cache with a size bound and a time-to-live per entry."""

    def __init__(
        self,
        max_size: int,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self._max_size = max_size
        self._ttl_s = ttl_s
        self._clock = clock
        # key -> (expires_at, value); ordered by store time, so expiry and eviction both
        # remove from the front (the TTL is the same for every entry).
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: K, value: V) -> None:
        """Store ``value`` (replacing any previous one) and restart its time-to-live."""
        now = self._clock()
        self._expire(now)
        self._entries[key] = (now + self._ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_size:
            self._entries.popitem(last=False)
            self.evicted += 1

    def get(self, key: K) -> V | None:
        """The value stored under ``key``, or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at <= self._clock():
            del self._entries[key]
            self.expired += 1
            return None
        return value

    def _expire(self, now: float) -> None:
        while self._entries:
            expires_at, _ = next(iter(self._entries.values()))
            if expires_at > now:
                return
            self._entries.popitem(last=False)
            self.expired += 1
