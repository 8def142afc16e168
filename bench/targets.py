"""The targets of a benchmark run and their verdicts: the derived figures ``finish`` adds.

``finish(results)`` adds ``results["max_throughput"]`` (per system and loop mode, the best
step within the p99 limit) and ``results["targets"]``: one ``{"target", "wanted", "value",
"met"}`` row per target, ``met`` None when the run cannot decide it. ``bench.report`` renders
them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from bench import archive as archive_bench
from bench.stats import ratio

P99_LIMIT_MS = 50.0
SYSTEMS = {
    "prgate": "prgate",
    "baseline_a": "Baseline A (Kafka)",
    "baseline_b": "Baseline B (gRPC)",
}


def best(steps: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The step with the highest throughput whose p99 is within the limit and has no errors."""
    good = [
        s for s in steps if not s["errors"] and s["latency_ms"]["p99"] <= P99_LIMIT_MS and s["ok"]
    ]
    return max(good, key=lambda s: s["throughput"]) if good else None


def _target(name: str, wanted: str, value: Any, met: bool | None) -> dict[str, Any]:
    return {"target": name, "wanted": wanted, "value": value, "met": met}


def state_store_targets(n: int, stores: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 16 from the restore step's ``state_stores`` figures."""
    found = []
    gateway, processor = stores["gateway"], stores["processor"]
    rss = gateway["cold"]["rss_growth_bytes_per_pull_request"]
    found.append(_target("gateway RSS per pull request, store", "<= 300 B", rss, rss <= 300))
    for who, figures in (("gateway", gateway), ("processor", processor)):
        warm = figures["warm"]["seconds"]
        found.append(
            _target(f"{who} warm restart with a store (n={n})", "<= 5 s", warm, warm <= 5.0)
        )
        rate = figures["cold"]["per_second"] or 0
        found.append(
            _target(f"{who} cold restore into a store", ">= 100000/s", rate, rate >= 100_000)
        )
    memory = stores["gateway_in_memory"]
    hit = ratio(gateway["get_cache_hit"]["p99_us"], memory["get_cache_hit"]["p99_us"])
    found.append(_target("get p99, cache hit, vs in memory", "<= 1.2x", hit, (hit or 99) <= 1.2))
    miss = gateway["get_any"]["p99_us"]
    found.append(_target("get p99, any pull request (us)", "<= 2000 us", miss, miss <= 2000))
    return found


def serving_targets(serving: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 16 from the real processes (``bench.serving``): RSS per pull
    request with the store, warm restart of a gateway and warm restore of a processor."""
    n = serving["n"]
    found = []
    for who in ("gateway", "processor"):
        cold, warm = serving[who]["cold"], serving[who]["warm"]
        rss = max(cold["rss_bytes_per_pull_request"], warm["rss_bytes_per_pull_request"])
        found.append(
            _target(
                f"{who} process RSS per pull request, store (n={n})", "<= 300 B", rss, rss <= 300
            )
        )
        rate = cold.get("per_second_beyond_empty")  # None: too few to tell from the start
        found.append(
            _target(
                f"{who} process, cold restore into a store (n={n}; per CPU-second: "
                f"{cold.get('per_cpu_second_beyond_empty')})",
                ">= 100000/s",
                rate,
                None if rate is None else rate >= 100_000,
            )
        )
        seconds = warm["seconds"]
        what = "to SERVING" if who == "gateway" else "to partitions restored"
        found.append(
            _target(
                f"{who} process, warm restart {what} (n={n})", "<= 5 s", seconds, seconds <= 5.0
            )
        )
    return found


def finish(results: dict[str, Any]) -> None:
    """Add the derived figures (max throughput per series) and the target verdicts."""
    steps = results.get("steps", [])
    top: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        for mode in ("closed", "open"):
            series = [
                s
                for s in steps
                if s["system"] == system
                and s["mode"] == mode
                and s["kind"] in ("mix", "rr")
                and "workers=" not in s["name"]
            ]
            found = best(series)
            top.setdefault(system, {})[mode] = (
                None if found is None else {"throughput": found["throughput"], "step": found}
            )
    results["max_throughput"] = top
    workers = results.get("workers")
    if workers:
        by_name = {s["name"]: s for s in steps}
        workers["reject"] = {
            by_name[many]["concurrency"]: by_name[many]["throughput"]
            for _, many in workers["pairs"]
            if by_name[many]["kind"] == "reject"
        }
    targets = []
    fixed = results.get("fixed_rate")
    if fixed and "prgate" in fixed and "baseline_a" in fixed:
        pg, base_a = fixed["prgate"]["latency_ms"], fixed["baseline_a"]["latency_ms"]
        for key, limit in (("p50", 1.3), ("p99", 2.0)):
            rel = ratio(pg[key], base_a[key])
            targets.append(
                _target(
                    f"round trip {key} at ~100/s vs Baseline A",
                    f"<= {limit:g}x",
                    rel,
                    rel is not None and rel <= limit,
                )
            )
        pg_cpu = (fixed["prgate"].get("cpu_ms_per_call") or {}).get("broker")
        a_cpu = (fixed["baseline_a"].get("cpu_ms_per_call") or {}).get("broker")
        rel = ratio(pg_cpu, a_cpu)
        targets.append(
            _target(
                "broker CPU per command at ~100/s vs Baseline A",
                "<= 2x",
                rel,
                rel is not None and rel <= 2,
            )
        )
    accepted = results.get("accepted")
    if accepted and fixed and "baseline_a" in fixed and "prgate" in fixed:
        ack = fixed["baseline_a"].get("accepted_ms", {}).get("p50")
        rel = ratio(accepted.get("accepted_ms", {}).get("p50"), ack)
        targets.append(
            _target(
                "durable acceptance p50 vs A's broker ack",
                "<= 1.5x",
                rel,
                rel is not None and rel <= 1.5,
            )
        )
        rel = ratio(accepted["latency_ms"]["p50"], fixed["prgate"]["latency_ms"]["p50"])
        targets.append(
            _target(
                "ACCEPTED then WatchCommand p50 vs COMPLETED round trip p50",
                "<= 1x",
                rel,
                rel is not None and rel <= 1,
            )
        )
    if steps:
        pg_top = (top.get("prgate") or {}).get("closed")
        a_top = (top.get("baseline_a") or {}).get("closed")
        rel = ratio((pg_top or {}).get("throughput"), (a_top or {}).get("throughput"))
        targets.append(
            _target(
                "highest closed-loop throughput (p99 <= 50 ms) vs Baseline A",
                ">= 0.4x",
                rel,
                rel is not None and rel >= 0.4,
            )
        )
    rejection = results.get("rejection")
    if rejection:
        pg_best = max((s["throughput"] for s in rejection["prgate"] if not s["errors"]), default=0)
        b_best = max((s["throughput"] for s in rejection["baseline_b"]), default=0)
        rel = ratio(pg_best, b_best)
        targets.append(
            _target("rejection throughput vs Baseline B", ">= 0.8x", rel, (rel or 0) >= 0.8)
        )
        if workers and workers.get("reject"):
            rel = ratio(max(workers["reject"].values()), b_best)
            targets.append(
                _target(
                    f"rejection throughput, {workers['gateway_workers']} gateway workers, vs B",
                    ">= 0.8x",
                    rel,
                    (rel or 0) >= 0.8,
                )
            )
    restore = results.get("restore")
    if restore:
        for who in ("processor", "gateway_read_model"):
            rate = restore[who]["per_second"] or 0
            targets.append(_target(f"restore rate, {who}", ">= 50000/s", rate, rate >= 50_000))
        stores = restore.get("state_stores")
        if stores:
            targets += state_store_targets(restore["n"], stores)
    if results.get("serving"):
        targets += serving_targets(results["serving"])
    if results.get("archive"):
        targets += archive_bench.targets(results["archive"])
    watchers = results.get("watchers")
    if watchers:
        p99 = watchers["all_watchers_ms"]["p99"]
        note = "" if watchers["watchers"] >= 10_000 else f" (measured with {watchers['watchers']})"
        if math.isnan(p99):  # not every stream got every version: the streams that did
            p99 = watchers["each_watcher_ms"]["p99"]
            note += f" (each of {watchers['subscribed']} subscribed watchers)"
        targets.append(
            _target(
                f"fan-out p99 to all of 10k watchers{note}",
                "<= 300 ms",
                p99,
                None if "measured with" in note else (not math.isnan(p99) and p99 <= 300),
            )
        )
    results["targets"] = targets
