"""The step runner of ``prgate bench``: runs load steps on the pool and records each with the
CPU every component used, plus the warm-up and the seeding of refusable pull requests.

``bench.run`` drives the scenarios through a :class:`Runner`; each recorded step is
``bench.steps.step_summary``'s dict plus ``cpu_cores`` and ``cpu_ms_per_call``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc

from bench import payloads
from bench.loadgen import LoadPool
from bench.plans import Plan
from bench.profile import Profiler
from bench.steps import Step, step_summary
from bench.system import BenchSystem, cpu_seconds, descendants
from prgate.v1 import command_service_pb2_grpc as svc_grpc

P99_LIMIT_MS = 50.0


def cpu_per_call(cores: dict[str, float], throughput: float) -> dict[str, float | None]:
    """Milliseconds of CPU per successful call of each process: its cores / calls per second.

    ``cores`` is CPU seconds per wall second over the whole step (warm-up included), so this
    assumes the warm-up ran at the window's rate; None when no call succeeded.
    """
    if throughput <= 0:
        return dict.fromkeys(cores)
    return {name: round(used * 1000 / throughput, 3) for name, used in cores.items()}


class Runner:
    """Runs steps on the pool and records them, with the CPU each component used."""

    def __init__(self, plan: Plan, system: BenchSystem, pool: LoadPool, profiler: Profiler) -> None:
        self.plan = plan
        self.system = system
        self.pool = pool
        self.profiler = profiler
        self.steps: list[dict[str, Any]] = []

    def profile(self, name: str, seconds: float) -> None:
        pids = self.system.pids()
        wanted: dict[str, int] = {c: pids[c] for c in ("gateway", "processor") if c in pids}
        self.profiler.start(name, wanted, seconds)

    def _pids(self) -> dict[str, list[int]]:
        pids = {name: [pid, *descendants(pid)] for name, pid in self.system.pids().items()}
        pids["loadgen"] = self.pool.pids
        return pids

    def step(self, step: Step) -> dict[str, Any]:
        self.system.check_alive()
        pids = self._pids()
        before = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
        self.profile(step.name, step.duration_s)
        started = time.perf_counter()
        outcome = self.pool.run(step)
        wall = time.perf_counter() - started
        self.profiler.finish()
        record = step_summary(step, outcome)
        record["cpu_cores"] = {
            name: round((sum(cpu_seconds(p) for p in ps) - before[name]) / wall, 3)
            for name, ps in pids.items()
        }
        record["cpu_ms_per_call"] = cpu_per_call(record["cpu_cores"], record["throughput"])
        self.steps.append(record)
        lat = record["latency_ms"]
        print(
            f"  {step.name:<34} {record['throughput']:>8.1f}/s  p50 {lat['p50']:7.2f}  "
            f"p99 {lat['p99']:7.2f}  max {lat['max']:8.2f} ms  errors {record['errors']}",
            flush=True,
        )
        return record

    def escalate(self, system: str, kind: str, mode: str, suffix: str = "") -> None:
        """Steps of rising load until p99 passes the limit or errors appear."""
        plan = self.plan
        values: Sequence[float] = plan.rates if mode == "open" else plan.concurrency
        for value in values:
            label = f"{value:g}/s" if mode == "open" else f"c={value:g}"
            record = self.step(
                Step(
                    name=f"{system} {kind} {mode} {label}{suffix}",
                    system=system,
                    kind=kind,
                    mode=mode,
                    rate=float(value) if mode == "open" else 0.0,
                    concurrency=int(value) if mode == "closed" else 0,
                    duration_s=plan.step_s,
                    warmup_s=plan.warmup_s,
                )
            )
            if plan.every_step and mode == "closed":
                continue
            if record["errors"] or record["latency_ms"]["p99"] > P99_LIMIT_MS:
                break

    def reject(self, system: str, concurrency: int, ids: tuple[str, ...], suffix: str = "") -> Any:
        """One closed-loop step of refused merges (FAILED_PRECONDITION, nothing reaches Kafka)."""
        return self.step(
            Step(
                name=f"{system} reject closed c={concurrency}{suffix}",
                system=system,
                kind="reject",
                mode="closed",
                concurrency=concurrency,
                duration_s=self.plan.step_s,
                warmup_s=self.plan.warmup_s,
                reject_ids=ids,
            )
        )

    def fixed(self, system: str, kind: str, rate: float, **extra: Any) -> dict[str, Any]:
        return self.step(
            Step(
                name=f"{system} {kind} fixed {rate:g}/s",
                system=system,
                kind=kind,
                mode="open",
                rate=rate,
                duration_s=self.plan.step_s,
                warmup_s=self.plan.warmup_s,
                **extra,
            )
        )


def warm_up(pool: LoadPool, plan: Plan) -> None:
    """An unrecorded closed loop through prgate (after a restart of the gateway)."""
    seconds = plan.warmup_per_system_s * 2
    pool.run(
        Step(
            "warmup", "prgate", "mix", "closed", concurrency=8, duration_s=seconds, warmup_s=seconds
        )
    )


def seed_unapproved(gateway: str, count: int) -> tuple[str, ...]:
    """Open ``count`` pull requests (COMPLETED) that nobody approves: merges get refused."""
    ids = []
    with grpc.insecure_channel(gateway) as channel:
        stub = svc_grpc.PullRequestCommandServiceStub(channel)
        for n in range(count):
            response = stub.OpenPullRequest(payloads.open_request(1000, n), timeout=10.0)
            ids.append(response.receipt.pull_request_id)
    return tuple(ids)
