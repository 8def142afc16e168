"""``prgate bench``: start a private stack and measure prgate against same-run baselines.

    prgate bench                 # default sizes (about 10 minutes)
    prgate bench --quick         # about 5 minutes idle: short steps, small restore and fan-out
    prgate bench --long          # restore 1M pull requests, 10k watchers
    prgate bench --json FILE     # also write the JSON results to FILE
    prgate bench --compare BASE.json            # run, then before (BASE) -> after per measure
    prgate bench --compare BASE.json AFTER.json # only compare two saved runs
    prgate bench --env PRGATE_PROCESSOR_BATCH_MAX_WAIT_MS=2   # try a setting (processor,
                                 # gateway and Baseline A's replier all get it)

Scenarios (all in one run, same broker): the command mix at a fixed ~100/s for prgate and
both baselines; closed-loop concurrency steps and open-loop rate steps for each, each series
stopping after the first step whose p99 passes 50 ms or that has errors; ACCEPTED mode with
WatchCommand; the rejection path; ghz (bench/ghz.py) for the round trip and the rejection
path; the gateway with 1 and then N workers back to back; K watchers; restore of N pull
requests, in the bench's process (bench/restore.py) and as real gateway and processor processes
in memory and with cold and warm state stores (bench/serving.py); the audit archive's rate
against a bare consumer and its commit-to-visible delay (bench/archive.py). Results go to
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

from bench import archive as archive_bench
from bench import compare, ghz, machine, report, targets
from bench import held as held_bench
from bench import restore as restore_bench
from bench import serving as serving_bench
from bench import watchers as watchers_bench
from bench.loadgen import LoadPool
from bench.plans import PLANS, Plan
from bench.profile import Profiler
from bench.runner import P99_LIMIT_MS, Runner, seed_unapproved, warm_up
from bench.steps import Step, Targets
from bench.system import (
    ARCHIVE_PREFIX,
    BASELINE_PREFIX,
    PLAIN_PREFIX,
    RESTORE_PREFIX,
    ROOT,
    BenchSystem,
)
from prgate.observability import logs

log = logging.getLogger(__name__)

SCENARIOS = (
    "fixed",
    "accepted",
    "closed",
    "open",
    "reject",
    "workers",
    "ghz",
    "watchers",
    "held",
    "restore",
    "serving",
    "archive",
)
SYSTEMS = ("prgate", "baseline_a", "baseline_a0", "baseline_b")
KINDS = {"prgate": "mix", "baseline_a": "rr", "baseline_a0": "rr", "baseline_b": "mix"}


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
                        runner.reject(system_name, concurrency, ids)
                    )
        if "ghz" in only and {"prgate", "baseline_b"} <= set(systems):
            print("ghz (Go load generator, descriptor set): round trip and rejection path")
            ids = seed_unapproved(system.gateway_target, plan.seed_prs)
            results["ghz"] = ghz.measure(
                system.gateway_target, system.echo_target, ids, plan.step_s
            )
            print(f"  {results['ghz']}")
        if "workers" in only and "prgate" in systems:
            many = plan.gateway_workers
            print(f"gateway with 1, then {many} worker processes (--workers), back to back")
            ids = seed_unapproved(system.gateway_target, plan.seed_prs)
            first = len(runner.steps)
            results["workers"] = {"gateway_workers": many, "pairs": [], "watchers": {}}
            for workers in (1, many):
                system.restart_gateway(workers)
                warm_up(pool, plan)  # the generator's channels reconnect, the workers warm up
                suffix = f" workers={workers}"
                runner.step(
                    Step(
                        name=f"prgate mix closed c={plan.workers_concurrency}{suffix}",
                        system="prgate",
                        kind="mix",
                        mode="closed",
                        concurrency=plan.workers_concurrency,
                        duration_s=plan.step_s,
                        warmup_s=plan.warmup_s,
                    )
                )
                runner.reject("prgate", max(plan.reject_concurrency), ids, suffix)
                if "watchers" in only:  # the fan-out spread over the workers' event loops
                    results["workers"]["watchers"][workers] = watchers_bench.measure(
                        pool,
                        system.gateway_target,
                        system.kafka(),
                        plan.watchers,
                        plan.watch_updates,
                    )
            names = [s["name"] for s in runner.steps[first:]]
            results["workers"]["steps"] = names
            half = len(names) // 2
            results["workers"]["pairs"] = list(zip(names[:half], names[half:], strict=True))
            system.restart_gateway(1)
            warm_up(pool, plan)
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
        if "held" in only:
            print(f"{plan.held_waves} waves of {plan.held_wave} calls held by a frozen processor")
            pids = system.pids()
            results["held"] = held_bench.measure(
                system.gateway_target,
                pids["gateway"],
                pids["processor"],
                plan.held_waves,
                plan.held_wave,
            )
            print(f"  {results['held']}")
        if "restore" in only:
            print(f"restore of {plan.restore_n} pull requests")
            results["restore"] = restore_bench.measure(system.kafka(RESTORE_PREFIX), plan.restore_n)
            print(f"  {results['restore']}")
        if "serving" in only:
            print(f"gateway and processor processes on {plan.restore_n} pull requests")
            if "restore" not in only:  # the topic the restore step fills
                restore_bench.fill(system.kafka(RESTORE_PREFIX), plan.restore_n)
            results["serving"] = serving_bench.measure(
                system.kafka(RESTORE_PREFIX), plan.restore_n, system.work_dir / "serving"
            )
            print(f"  {results['serving']}")
        if "archive" in only:
            print(f"audit archive of {plan.archive_n} records, then commit-to-visible delays")
            results["archive"] = archive_bench.measure(
                system.kafka(ARCHIVE_PREFIX),
                out_dir / "work",
                system._env(ARCHIVE_PREFIX),
                plan.archive_n,
                plan.archive_live_s,
            )
            print(f"  {results['archive']}")
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
    size.add_argument(
        "--quick", action="store_true", help="short steps: about 5 minutes on an idle machine"
    )
    size.add_argument("--long", action="store_true", help="1M restore, 10k watchers")
    size.add_argument("--smoke", action="store_true", help="seconds-long run with tiny sizes")
    parser.add_argument("--json", type=Path, help="also write the JSON results here")
    parser.add_argument("--out", type=Path, help="output directory (default bench/results/…)")
    parser.add_argument("--workers", type=int, help="load generator processes")
    parser.add_argument(
        "--restore-n",
        type=int,
        help="pull requests of the restore and state-store step (default: the plan's; "
        "--long 1M; 10M to check memory per pull request at scale)",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="BASE.json: print before -> after of every measure after the run; "
        "BASE.json AFTER.json: compare two saved runs without running",
    )
    parser.add_argument(
        "--only", help=f"comma-separated scenarios to run (default all: {','.join(SCENARIOS)})"
    )
    parser.add_argument(
        "--systems",
        help=f"comma-separated systems to measure (default all: {','.join(SYSTEMS)})",
    )
    parser.add_argument(
        "--concurrency",
        metavar="N,N,...",
        help="closed-loop steps to run, all of them (no stop at p99 > 50 ms): for A/B pairs",
    )
    parser.add_argument("--step-s", type=float, help="seconds of each step (after its warm-up)")
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
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.compare and len(args.compare) > 2:
        parser.error("--compare takes BASE.json, or BASE.json AFTER.json")
    if args.compare and len(args.compare) == 2:
        before, after = (json.loads(path.read_text()) for path in args.compare)
        print(compare.table(before, after))
        return 0
    logs.configure("WARNING")
    name = "quick" if args.quick else "long" if args.long else "smoke" if args.smoke else "default"
    plan = PLANS[name]
    if args.workers:
        plan = replace(plan, workers=args.workers)
    if args.restore_n:
        plan = replace(plan, restore_n=args.restore_n)
    if args.concurrency:
        steps = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
        plan = replace(plan, concurrency=steps, every_step=True)
    if args.step_s:
        plan = replace(plan, step_s=args.step_s)
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
    targets.finish(results)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    markdown = report.markdown(results)
    (out_dir / "results.md").write_text(markdown)
    plot = report.plot(results, out_dir / "latency_vs_throughput.png")
    print(markdown)
    print(f"results: {out_dir / 'results.json'}, {out_dir / 'results.md'}, plot: {plot}")
    if args.compare:
        comparison = compare.table(json.loads(args.compare[0].read_text()), results)
        (out_dir / "compare.md").write_text(comparison)
        print(comparison)
        print(f"comparison: {out_dir / 'compare.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
