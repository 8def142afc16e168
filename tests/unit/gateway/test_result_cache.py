"""TtlCache: the reply router's bounded, time-limited memory of results."""

from __future__ import annotations

import pytest

from gateway.result_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_get_returns_what_was_put_until_the_ttl_passes() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, ttl_s=5.0, clock=clock)
    cache.put("a", 1)
    clock.now += 4.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is None
    assert len(cache) == 0
    assert cache.expired == 1


def test_put_again_restarts_the_ttl_and_replaces_the_value() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, ttl_s=5.0, clock=clock)
    cache.put("a", 1)
    clock.now += 4.0
    cache.put("a", 2)
    clock.now += 4.0
    assert cache.get("a") == 2


def test_size_bound_evicts_the_oldest_first() -> None:
    cache: TtlCache[str, int] = TtlCache(3, ttl_s=60.0, clock=Clock())
    for i, key in enumerate("abcd"):
        cache.put(key, i)
    assert len(cache) == 3
    assert cache.get("a") is None
    assert [cache.get(k) for k in "bcd"] == [1, 2, 3]
    assert cache.evicted == 1


def test_put_drops_expired_entries_from_the_front() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(100, ttl_s=1.0, clock=clock)
    for key in "abc":
        cache.put(key, 0)
    clock.now += 2.0
    cache.put("d", 1)
    assert len(cache) == 1
    assert cache.expired == 3


@pytest.mark.parametrize(("size", "ttl"), [(0, 1.0), (1, 0.0)])
def test_rejects_meaningless_bounds(size: int, ttl: float) -> None:
    with pytest.raises(ValueError):
        TtlCache(size, ttl)
