"""The processor's adaptive batch wait: wait for more commands only after a batch of several."""

from __future__ import annotations

from processor.membership import IDLE_POLL_S, take_batch


class FakeConsume:
    """Hands out queued items; records each call's (n, timeout)."""

    def __init__(self, *waves: list[str]) -> None:
        self.waves = list(waves)
        self.calls: list[tuple[int, float]] = []

    def __call__(self, n: int, timeout: float) -> list[str]:
        self.calls.append((n, timeout))
        wave = self.waves.pop(0) if self.waves else []
        return wave[:n]


def test_after_a_lone_command_only_what_is_fetched_is_taken() -> None:
    consume = FakeConsume(["a"], [])
    assert take_batch(consume, 500, 0.002, last=1) == ["a"]
    assert consume.calls == [(1, IDLE_POLL_S), (499, 0.0)]


def test_after_a_batch_of_several_it_waits_for_more() -> None:
    consume = FakeConsume(["a"], ["b", "c"])
    assert take_batch(consume, 500, 0.002, last=7) == ["a", "b", "c"]
    assert consume.calls == [(1, IDLE_POLL_S), (499, 0.002)]


def test_nothing_came_no_second_call_and_batches_of_one_never_wait() -> None:
    idle = FakeConsume([])
    assert take_batch(idle, 500, 0.002, last=9) == []
    assert idle.calls == [(1, IDLE_POLL_S)]
    single = FakeConsume(["a"])
    assert take_batch(single, 1, 0.002, last=9) == ["a"]
    assert single.calls == [(1, IDLE_POLL_S)]
