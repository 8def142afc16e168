"""``prgate bench``: start a private stack and measure prgate against same-run baselines.

    prgate bench                 # default sizes (about 10 minutes)
    prgate bench --quick         # at most 3 minutes, short steps, small restore and fan-out
    prgate bench --long          # restore 1M pull requests, 10k watchers
    prgate bench --json FILE     # also write the JSON results to FILE
    prgate bench --env PRGATE_PROCESSOR_BATCH_MAX_WAIT_MS=2   # try a setting (processor,
                                 # gateway and Baseline A's replier all get it)

Scenarios (all in one run, same broker): the command mix at a fixed ~100/s for prgate and
both baselines; closed-loop concurrency steps and open-loop rate steps for each, each series
stopping after the first step whose p99 passes 50 ms or that has errors; ACCEPTED mode with
WatchCommand; the rejection path; K watchers; restore of N pull requests. Results go to
``bench/results/<time>-<profile>/`` (results.json, results.md, latency_vs_throughput.png and
the services' logs).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from bench import machine, payloads, report
from bench import restore as restore_bench
from bench import watchers as watchers_bench
from bench.loadgen import LoadPool
from bench.plans import PLANS, Plan
from bench.profile import Profiler
from bench.steps import Step, Targets, step_summary
from bench.system import (
    BASELINE_PREFIX,
    PLAIN_PREFIX,
    RESTORE_PREFIX,
    ROOT,
    BenchSystem,
    cpu_seconds,
)
from prgate.v1 import command_service_pb2_grpc as svc_grpc

log = logging.getLogger("bench")

P99_LIMIT_MS = 50.0
SCENARIOS = ("fixed", "accepted", "closed", "open", "reject", "watchers", "restore")
SYSTEMS = ("prgate", "baseline_a", "baseline_a0", "baseline_b")
KINDS = {"prgate": "mix", "baseline_a": "rr", "baseline_a0": "rr", "baseline_b": "mix"}


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
        pids = {name: [pid] for name, pid in self.system.pids().items()}
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
        self.steps.append(record)
        lat = record["latency_ms"]
        print(
            f"  {step.name:<34} {record['throughput']:>8.1f}/s  p50 {lat['p50']:7.2f}  "
            f"p99 {lat['p99']:7.2f}  max {lat['max']:8.2f} ms  errors {record['errors']}",
            flush=True,
        )
        return record

    def escalate(self, system: str, kind: str, mode: str) -> None:
        """Steps of rising load until p99 passes the limit or errors appear."""
        plan = self.plan
        values: Sequence[float] = plan.rates if mode == "open" else plan.concurrency
        for value in values:
            label = f"{value:g}/s" if mode == "open" else f"c={value:g}"
            record = self.step(
                Step(
                    name=f"{system} {kind} {mode} {label}",
                    system=system,
                    kind=kind,
                    mode=mode,
                    rate=float(value) if mode == "open" else 0.0,
                    concurrency=int(value) if mode == "closed" else 0,
                    duration_s=plan.step_s,
                    warmup_s=plan.warmup_s,
                )
            )
            if record["errors"] or record["latency_ms"]["p99"] > P99_LIMIT_MS:
                break

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


def seed_unapproved(gateway: str, count: int) -> tuple[str, ...]:
    """Open ``count`` pull requests (COMPLETED) that nobody approves: merges get refused."""
    ids = []
    with grpc.insecure_channel(gateway) as channel:
        stub = svc_grpc.PullRequestCommandServiceStub(channel)
        for n in range(count):
            response = stub.OpenPullRequest(payloads.open_request(1000, n), timeout=10.0)
            ids.append(response.receipt.pull_request_id)
    return tuple(ids)


def run(
    plan: Plan,
    out_dir: Path,
    env: dict[str, str],
    only: Sequence[str],
    *,
    systems: Sequence[str] = SYSTEMS,
    profile: str = "",
) -> dict[str, Any]:
    """The whole benchmark; returns the results document."""
    results: dict[str, Any] = {
        "meta": {
            "profile": plan.name,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "plan": plan.__dict__,
            "env_overrides": env,
            "scenarios": list(only),
            "systems": list(systems),
        },
        "machine": machine.facts(),
    }
    started = time.perf_counter()
    system = BenchSystem(out_dir / "work", env_overrides=env)
    pool: LoadPool | None = None
    try:
        print(f"starting a private broker, processor, gateway and baselines in {out_dir}")
        system.start_broker()
        system.start_services()
        pool = LoadPool(
            plan.workers,
            Targets(
                system.gateway_target,
                system.echo_target,
                system.kafka(BASELINE_PREFIX),
                system.kafka(PLAIN_PREFIX),
            ),
        )
        results["loadgen"] = {
            "kind": "multi-process Python grpc.aio (one event loop and channel per process)",
            "workers": plan.workers,
        }
        profiler = Profiler(out_dir, profile)
        runner = Runner(plan, system, pool, profiler)
        # The broker's JIT compiler alone takes most of a core for the first minute of load
        # (measured with top -H: "C2 CompilerThread"), so everything warms up before any step
        # is recorded: a closed loop through prgate and Baseline A, then every system briefly.
        print(f"warming up for about {plan.broker_warmup_s + 4 * plan.warmup_per_system_s:.0f}s")
        for system_name in ("prgate", "baseline_a"):
            if system_name in systems:
                seconds = plan.broker_warmup_s / 2
                pool.run(
                    Step(
                        "warmup",
                        system_name,
                        KINDS[system_name],
                        "closed",
                        concurrency=8,
                        duration_s=seconds,
                        warmup_s=seconds,
                    )
                )
        for system_name, kind in KINDS.items():
            if system_name in systems:
                seconds = plan.warmup_per_system_s
                pool.run(
                    Step(
                        "warmup",
                        system_name,
                        kind,
                        rate=100.0,
                        duration_s=seconds,
                        warmup_s=seconds,
                    )
                )
        if "fixed" in only:
            print(f"round trip at a fixed {plan.fixed_rate:g}/s")
            results["fixed_rate"] = {
                name: runner.fixed(name, kind, plan.fixed_rate)
                for name, kind in KINDS.items()
                if name in systems
            }
        if "accepted" in only:
            print("ACCEPTED mode and WatchCommand")
            results["accepted"] = runner.fixed("prgate", "accepted", plan.fixed_rate)
        for mode in ("closed", "open"):
            if mode in only:
                print(f"{mode}-loop steps (until p99 > {P99_LIMIT_MS:g} ms or errors)")
                for system_name in ("baseline_b", "baseline_a", "prgate"):
                    if system_name in systems:
                        runner.escalate(system_name, KINDS[system_name], mode)
        if "reject" in only:
            print("rejection path (synchronous validation, no Kafka)")
            ids = seed_unapproved(system.gateway_target, plan.seed_prs)
            results["rejection"] = {"prgate": [], "baseline_b": []}
            for concurrency in plan.reject_concurrency:
                for system_name in ("prgate", "baseline_b"):
                    if system_name not in systems:
                        continue
                    results["rejection"][system_name].append(
                        runner.step(
                            Step(
                                name=f"{system_name} reject closed c={concurrency}",
                                system=system_name,
                                kind="reject",
                                mode="closed",
                                concurrency=concurrency,
                                duration_s=plan.step_s,
                                warmup_s=plan.warmup_s,
                                reject_ids=ids,
                            )
                        )
                    )
        results["steps"] = runner.steps
        if "watchers" in only:
            print(f"{plan.watchers} watchers, {plan.watch_updates} versions")
            single = watchers_bench.measure(
                pool, system.gateway_target, system.kafka(), 1, plan.watch_updates
            )
            runner.profile("watchers", plan.watch_updates * 0.2 + 10)
            results["watchers"] = watchers_bench.measure(
                pool, system.gateway_target, system.kafka(), plan.watchers, plan.watch_updates
            )
            profiler.finish()
            results["watchers"]["single"] = single
            print(f"  {results['watchers']}")
        if "restore" in only:
            print(f"restore of {plan.restore_n} pull requests")
            results["restore"] = restore_bench.measure(system.kafka(RESTORE_PREFIX), plan.restore_n)
            print(f"  {results['restore']}")
        results["settings"] = report.effective_settings(system, env)
        if profiler.summaries:
            results["profiles"] = profiler.summaries
    finally:
        if pool is not None:
            pool.close()
        system.close()
        shutil.rmtree(out_dir / "work" / "kafka", ignore_errors=True)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_average_at_end"] = machine.load_average()
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prgate bench", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a run of at most 3 minutes")
    size.add_argument("--long", action="store_true", help="1M restore, 10k watchers")
    size.add_argument("--smoke", action="store_true", help="seconds-long run with tiny sizes")
    parser.add_argument("--json", type=Path, help="also write the JSON results here")
    parser.add_argument("--out", type=Path, help="output directory (default bench/results/…)")
    parser.add_argument("--workers", type=int, help="load generator processes")
    parser.add_argument(
        "--only", help=f"comma-separated scenarios to run (default all: {','.join(SCENARIOS)})"
    )
    parser.add_argument(
        "--systems",
        help=f"comma-separated systems to measure (default all: {','.join(SYSTEMS)})",
    )
    parser.add_argument(
        "--profile",
        default="",
        metavar="TEXT",
        help="py-spy the gateway and processor during steps whose name contains TEXT",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the processor, gateway and replier (e.g. a PRGATE_* setting)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prgate bench``."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    name = "quick" if args.quick else "long" if args.long else "smoke" if args.smoke else "default"
    plan = PLANS[name]
    if args.workers:
        plan = replace(plan, workers=args.workers)
    only = [s.strip() for s in (args.only or ",".join(SCENARIOS)).split(",") if s.strip()]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        print(f"prgate bench: unknown scenarios {sorted(unknown)}", file=sys.stderr)
        return 2
    systems = [s.strip() for s in (args.systems or ",".join(SYSTEMS)).split(",") if s.strip()]
    env = dict(item.split("=", 1) for item in args.env if "=" in item)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.out or ROOT / "bench" / "results" / f"{stamp}-{name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = run(plan, out_dir, env, only, systems=systems, profile=args.profile)
    report.finish(results)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    markdown = report.markdown(results)
    (out_dir / "results.md").write_text(markdown)
    plot = report.plot(results, out_dir / "latency_vs_throughput.png")
    print(markdown)
    print(f"results: {out_dir / 'results.json'}, {out_dir / 'results.md'}, plot: {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
