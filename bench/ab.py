"""Paired A/B runs of gateway variants on one private broker (a lab, not a bench step).

Each variant is a gateway process started from a checkout of its own (``NAME=DIR``, e.g. the
main branch in a second worktree) with optional settings (``--env NAME:KEY=VALUE``); all of
them run at once beside one processor and Baseline B's echo server. Rounds run the same
closed-loop rejection step against every variant and the echo server, in a new random order
each round, so a burst of load on this shared machine falls on all of them alike; the
decision rests on the medians of the per-round ratios, never on one step.

    python -m bench.ab --variant base=/tmp/base --variant new=. --rounds 8 --step-s 4

Prints, and writes as JSON to ``--json``, each step's throughput, p50/p99 and the server's
CPU per call (ms: the process's CPU from /proc over the step's calls), then per variant the
median CPU per call and the median and range of its per-round ratio to the first variant.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench import payloads
from bench.loadgen import LoadPool
from bench.runner import seed_unapproved
from bench.stats import summarize
from bench.steps import Step, Targets
from bench.system import (
    BASELINE_PREFIX,
    PLAIN_PREFIX,
    BenchSystem,
    Child,
    cpu_seconds,
    free_port,
    wait_serving,
)
from prgate.v1 import command_service_pb2_grpc as svc_grpc

_TICKS = os.sysconf("SC_CLK_TCK")


def _gateway(
    system: BenchSystem, name: str, checkout: Path, env: dict[str, str]
) -> tuple[Child, str]:
    """A gateway started from ``checkout``, SERVING; with its address."""
    target = f"127.0.0.1:{free_port()}"
    child = Child(
        f"gateway-{name}",
        [sys.executable, "-m", "gateway"],
        system._env() | {"PRGATE_LISTEN": target, "PYTHONPATH": str(checkout)} | env,
        system.work_dir / f"gateway-{name}.log",
    )
    with child.log_path.open("ab") as out:  # cwd = the checkout: `-m` imports from there
        child.process = subprocess.Popen(
            child.argv, cwd=checkout, env=child.env, stdout=out, stderr=subprocess.STDOUT
        )
    system.children[child.name] = child
    wait_serving(target, child)
    return child, target


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` by thread name (same names summed)."""
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            head, _, rest = (task / "stat").read_text().rpartition(")")
        except OSError:
            continue
        fields = rest.split()
        name = head.partition("(")[2]
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICKS
    return found


def _refuses(target: str, pull_request_id: str, timeout: float = 60.0) -> None:
    """Wait until ``target``'s read model knows the pull request (the merge is refused
    FAILED_PRECONDITION, not NOT_FOUND)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = svc_grpc.PullRequestCommandServiceStub(channel)
        while time.monotonic() < deadline:
            try:
                stub.MergePullRequest(payloads.unapproved_merge(pull_request_id), timeout=5.0)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"{target} never refused the merge of {pull_request_id}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--variant", action="append", required=True, help="NAME=CHECKOUT_DIR")
    parser.add_argument("--env", action="append", default=[], help="NAME:KEY=VALUE")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--step-s", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    envs: dict[str, dict[str, str]] = {name: {} for name in variants}
    for item in args.env:
        name, _, setting = item.partition(":")
        key, _, value = setting.partition("=")
        envs[name][key] = value
    system = BenchSystem(Path(tempfile.mkdtemp(prefix="prgate-ab-")))
    pools: dict[str, LoadPool] = {}
    rows: list[dict[str, Any]] = []
    try:
        system.start_broker()
        env = system._env() | {"PRGATE_PROCESSOR_INSTANCE_ID": "ab-p0"}
        system._child("processor", [sys.executable, "-m", "processor"], env)
        echo_target = f"127.0.0.1:{free_port()}"
        echo = system._child(
            "echo", [sys.executable, "-m", "bench.baselines", "echo", echo_target], system._env()
        )
        wait_serving(echo_target, echo)
        gateways = {
            name: _gateway(system, name, Path(path).resolve(), envs[name])
            for name, path in variants.items()
        }
        targets = {name: target for name, (_child, target) in gateways.items()}
        ids = seed_unapproved(next(iter(targets.values())), 20)
        for target in targets.values():
            _refuses(target, ids[-1])
        targets["echo"] = echo_target
        pids = {name: child.pid for name, (child, _target) in gateways.items()}
        pids["echo"] = echo.pid
        for name, target in targets.items():
            pools[name] = LoadPool(
                2,
                Targets(target, target, system.kafka(BASELINE_PREFIX), system.kafka(PLAIN_PREFIX)),
            )
        order = list(targets)
        for round_no in range(-1, args.rounds):  # round -1 warms every server up
            random.shuffle(order)
            for name in order:
                step = Step(
                    name=f"{name} reject c={args.concurrency}",
                    system="baseline_b" if name == "echo" else "prgate",
                    kind="reject",
                    mode="closed",
                    concurrency=args.concurrency,
                    duration_s=args.step_s,
                    warmup_s=1.0,
                    reject_ids=ids,
                )
                threads = _threads(pids[name])
                before, started = cpu_seconds(pids[name]), time.perf_counter()
                outcome = pools[name].run(step)
                wall = time.perf_counter() - started
                cores = (cpu_seconds(pids[name]) - before) / wall
                rate = outcome.closed_rate
                after = _threads(pids[name])
                used = {t: after[t] - threads.get(t, 0.0) for t in after}
                total = sum(used.values()) or 1.0
                lat = summarize(outcome.latencies)
                row = {
                    "round": round_no,
                    "variant": name,
                    "throughput": round(rate, 1),
                    "p50_ms": lat["p50"],
                    "p99_ms": lat["p99"],
                    "errors": sum(outcome.errors.values()),
                    "cpu_ms_per_call": round(1000 * cores / rate, 4) if rate else None,
                    "load": os.getloadavg()[0],
                    "thread_shares": {
                        t: round(v / total, 3) for t, v in sorted(used.items()) if v / total >= 0.01
                    },
                }
                print(json.dumps(row), flush=True)
                if round_no >= 0:
                    rows.append(row)
    finally:
        for pool in pools.values():
            pool.close()
        system.close()
        shutil.rmtree(system.work_dir, ignore_errors=True)  # the broker's data, the logs
    summary = _summary(rows, list(variants))
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


def _summary(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    by: dict[tuple[int, str], dict[str, Any]] = {(r["round"], r["variant"]): r for r in rows}
    rounds = sorted({r["round"] for r in rows})
    first = variants[0]
    out: dict[str, Any] = {}
    for name in [*variants, "echo"]:
        cpu = [by[r, name]["cpu_ms_per_call"] for r in rounds if by[r, name]["cpu_ms_per_call"]]
        rate = [by[r, name]["throughput"] for r in rounds]
        entry: dict[str, Any] = {
            "cpu_ms_per_call_median": round(statistics.median(cpu), 4),
            "throughput_median": round(statistics.median(rate), 1),
        }
        for measure in ("cpu_ms_per_call", "throughput"):
            ratios = sorted(
                by[r, name][measure] / by[r, first][measure]
                for r in rounds
                if by[r, name][measure] and by[r, first][measure]
            )
            entry[f"{measure}_ratio_to_{first}"] = {
                "median": round(statistics.median(ratios), 3),
                "range": [round(ratios[0], 3), round(ratios[-1], 3)],
            }
        out[name] = entry
    return out


if __name__ == "__main__":
    sys.exit(main())
