"""The load generator's closed loop against a fake call of known latency (pure asyncio).

A closed loop with ``c`` callers must report ``c / mean latency`` calls per second (Little's
law): any gap between the throughput and that figure is idle time of the generator, not of
the system under test. The fake call sleeps; no gRPC, no Kafka, and nothing here measures
prgate: the bounds are on the generator's own arithmetic, with generous margins for a loaded
machine (an asyncio sleep overshoots, but the overshoot is part of the measured latency).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from bench.loadgen import Worker
from bench.steps import Step, Targets, step_summary
from prgate.kafka.settings import KafkaSettings

KAFKA = KafkaSettings(bootstrap_servers="127.0.0.1:1")
TARGETS = Targets("127.0.0.1:1", "127.0.0.1:1", KAFKA, KAFKA)


def _run(
    latencies_s: Callable[[int], float], concurrency: int, duration_s: float, warmup_s: float
) -> dict[str, object]:
    """One closed-loop step whose n-th call (from 0) takes ``latencies_s(n)`` seconds."""
    worker = Worker(0, 1, TARGETS)
    calls = 0

    async def fake_call(started: float) -> dict[str, float]:
        nonlocal calls
        n, calls = calls, calls + 1
        await asyncio.sleep(latencies_s(n))
        return {}

    def operation(step: Step) -> Callable[[float], Awaitable[dict[str, float]]]:
        return fake_call

    worker.operation = operation  # type: ignore[method-assign]
    step = Step(
        "fake",
        "prgate",
        "mix",
        "closed",
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        start_at=time.time(),
    )
    outcome = asyncio.run(worker.run(step, None))  # type: ignore[arg-type]
    return step_summary(step, outcome)


def _littles_law_ratio(summary: dict[str, object], concurrency: int) -> float:
    latency = summary["latency_ms"]
    assert isinstance(latency, dict)
    expected = concurrency * 1000.0 / latency["mean"]
    throughput = summary["throughput"]
    assert isinstance(throughput, float)
    return float(throughput / expected)


def test_one_caller_makes_one_call_per_mean_latency() -> None:
    summary = _run(lambda n: 0.010, concurrency=1, duration_s=1.5, warmup_s=0.3)

    assert summary["errors"] == 0
    assert _littles_law_ratio(summary, 1) == pytest.approx(1.0, rel=0.1)


def test_a_slow_call_across_the_warmup_leaves_no_idle_window() -> None:
    # The first call takes 0.6 s: it starts in the 0.3 s warm-up and ends inside the window.
    # It is not counted (it started in the warm-up), and the window no longer starts at the
    # end of the warm-up but at the caller's first counted call, so its tail is not idle time
    # in the window: before, the throughput said ~1/4 less than 1 / mean latency.
    summary = _run(lambda n: 0.6 if n == 0 else 0.010, concurrency=1, duration_s=1.5, warmup_s=0.3)

    latency = summary["latency_ms"]
    assert isinstance(latency, dict)
    assert latency["max"] < 600.0
    assert _littles_law_ratio(summary, 1) == pytest.approx(1.0, rel=0.1)


def test_a_slow_call_inside_the_window_is_counted_with_its_latency() -> None:
    summary = _run(lambda n: 0.3 if n == 40 else 0.010, concurrency=1, duration_s=1.5, warmup_s=0.3)

    latency = summary["latency_ms"]
    assert isinstance(latency, dict)
    assert latency["max"] >= 300.0
    assert _littles_law_ratio(summary, 1) == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("concurrency", [2, 8])
def test_several_callers_follow_littles_law(concurrency: int) -> None:
    summary = _run(lambda n: 0.020, concurrency=concurrency, duration_s=1.5, warmup_s=0.3)

    assert _littles_law_ratio(summary, concurrency) == pytest.approx(1.0, rel=0.1)


def test_baseline_ack_counts_from_the_scheduled_start_like_prgates_acceptance() -> None:
    """prgate's "accepted" counts from the call's scheduled time (``started``); Baseline A's
    broker ack must too, or the generator's send lag is charged to prgate alone."""

    class FakeRequester:
        async def request(self, step: int, timeout: float) -> tuple[float, float]:
            return 2.0, 5.0  # acked 2 ms, replied 5 ms after the request began

    worker = Worker(0, 1, TARGETS)
    worker._requesters["baseline_a"] = FakeRequester()
    step = Step("fake", "baseline_a", "rr", "open", rate=1.0, duration_s=1.0, warmup_s=0.0)
    late_by_s = 0.030  # the call starts 30 ms after its scheduled time
    extra = asyncio.run(worker.call_rr(step, time.perf_counter() - late_by_s))
    assert 30.0 + 2.0 <= extra["accepted"] < 30.0 + 2.0 + 20.0
