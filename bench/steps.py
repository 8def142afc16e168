"""What the load generator is asked to do (a Step) and what it measured (an Outcome)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.stats import summarize
from prgate.kafka.settings import KafkaSettings


@dataclass(frozen=True)
class Targets:
    """Where the workers send load."""

    gateway: str
    echo: str
    baseline_kafka: KafkaSettings
    plain_kafka: KafkaSettings


@dataclass(frozen=True)
class Step:
    """One measurement: what to call, how, for how long."""

    name: str
    system: str  # "prgate" | "baseline_a" | "baseline_a0" | "baseline_b"
    kind: str  # "mix" | "accepted" | "reject" | "rr" | "watch"
    mode: str = "open"  # "open" | "closed"
    rate: float = 0.0
    concurrency: int = 0
    duration_s: float = 3.0
    warmup_s: float = 0.5
    timeout_s: float = 5.0
    start_at: float = 0.0
    reject_ids: tuple[str, ...] = ()
    watch_id: str = ""
    watchers: int = 0
    watch_last_version: int = 0


@dataclass
class Outcome:
    """Raw results of one worker, or of all of them merged."""

    latencies: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0
    arrivals: dict[int, list[float]] = field(default_factory=dict)
    subscribed: int = 0
    # Closed loop: the sum over callers of calls started / the caller's window (calls/s).
    closed_rate: float = 0.0

    def merge(self, other: Outcome) -> None:
        self.latencies += other.latencies
        for key, values in other.extra.items():
            self.extra.setdefault(key, []).extend(values)
        self.errors.update(other.errors)
        self.cpu_s += other.cpu_s
        for version, times in other.arrivals.items():
            self.arrivals.setdefault(version, []).extend(times)
        self.subscribed += other.subscribed
        self.closed_rate += other.closed_rate


def step_summary(step: Step, outcome: Outcome) -> dict[str, Any]:
    """The JSON record of one step: offered load, achieved throughput, latency, errors."""
    window = max(1e-9, step.duration_s - step.warmup_s)
    ok = len(outcome.latencies)
    errors = sum(outcome.errors.values())
    # Closed loop: each caller's calls over its own window, scaled to the successful ones.
    started = ok + errors
    if step.mode == "closed" and outcome.closed_rate and started:
        throughput = outcome.closed_rate * ok / started
    else:
        throughput = ok / window
    record: dict[str, Any] = {
        "name": step.name,
        "system": step.system,
        "kind": step.kind,
        "mode": step.mode,
        "offered_rate": step.rate if step.mode == "open" else None,
        "concurrency": step.concurrency if step.mode == "closed" else None,
        "seconds": round(window, 3),
        "ok": ok,
        "errors": errors,
        "error_codes": dict(outcome.errors),
        "throughput": round(throughput, 1),
        "latency_ms": summarize(outcome.latencies),
        "loadgen_cpu_ms_per_call": round(outcome.cpu_s * 1000 / max(1, ok + errors), 3),
    }
    for key, values in outcome.extra.items():
        record[f"{key}_ms"] = summarize(values)
    return record
