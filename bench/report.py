"""The settings, the markdown table and the plot of one benchmark run.

The derived figures and the target verdicts they show come from ``bench.targets``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from bench import archive as archive_bench
from bench import ghz as ghz_bench
from bench.stats import ratio
from bench.system import BenchSystem
from bench.targets import P99_LIMIT_MS, SYSTEMS
from gateway.producer import CommandProducer
from gateway.settings import GatewaySettings
from prgate.kafka.tail import TopicTail
from prgate.settings import load
from processor.settings import ProcessorSettings

COLORS = {"prgate": "tab:red", "baseline_a": "tab:blue", "baseline_b": "tab:green"}


def effective_settings(system: BenchSystem, env: dict[str, str]) -> dict[str, Any]:
    """The settings and client configs the services ran with (after ``--env`` overrides)."""
    environ = system._env()
    processor = load(ProcessorSettings, None, environ)
    gateway = load(GatewaySettings, None, environ)
    kafka = system.kafka()

    def plain(config: dict[str, Any]) -> dict[str, Any]:
        # Plain values only: callbacks and the ``logger`` object are not settings.
        return {
            k: v
            for k, v in config.items()
            if isinstance(v, str | int | float | bool) and k != "bootstrap.servers"
        }

    tail: TopicTail[None] = TopicTail(kafka, "t", name="x", decode=lambda m: None, apply=print)
    return {
        "overrides": env,
        "processor": {
            "batch_max_records": processor.batch_max_records,
            "batch_max_wait_ms": processor.batch_max_wait_ms,
            "consumer": plain(processor.consumer_config("p")),
            "producer": plain(processor.producer_config("p")),
        },
        "gateway": {
            **{k: v for k, v in dataclasses.asdict(gateway).items() if k != "listen"},
            "producer": plain(CommandProducer(kafka)._config),
            "tail_consumer": plain(tail._config),
        },
    }


# --- markdown ------------------------------------------------------------------------------


def _ms(value: Any) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{value:.2f}"


def _x(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _with_ratio(value: Any, base: Any) -> str:
    """``12.34 (1.50x)``: a value with its ratio to the baseline."""
    return f"{_ms(value)} ({_x(ratio(value, base))})"


def _latency_row(label: str, rec: dict[str, Any], base: dict[str, Any] | None) -> str:
    lat = rec["latency_ms"]
    cells = [label, f"{rec['throughput']:.0f}/s"]
    for key in ("p50", "p95", "p99", "max"):
        cells.append(_ms(lat[key]) + (f" ({_x(ratio(lat[key], base[key]))})" if base else ""))
    cells.append(str(rec["errors"]))
    return "| " + " | ".join(cells) + " |"


def markdown(results: dict[str, Any]) -> str:
    """The human-readable report: absolute numbers, each with its ratio to a baseline."""
    m = results["machine"]
    lines = [
        f"# prgate bench ({results['meta']['profile']}, {results['meta']['started']})",
        "",
        f"Machine: {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}; "
        f"Python {m['python']}, grpcio {m['grpcio']}, protobuf {m['protobuf']}, "
        f"confluent-kafka {m['confluent_kafka']} (librdkafka {m['librdkafka']}), "
        f"Kafka {m['kafka_broker']} ({m['java']}). Load average at start "
        f"{m['load_average_at_start']}, at end {m.get('load_average_at_end')}. "
        f"Load generator: {results.get('loadgen', {}).get('kind')}, "
        f"{results.get('loadgen', {}).get('workers')} processes. "
        f"Overrides: {results['meta']['env_overrides'] or 'none'}.",
        "",
    ]
    fixed = results.get("fixed_rate") or {}
    if fixed:
        base = fixed.get("baseline_a", {}).get("latency_ms")
        lines += [
            "## Round trip at a fixed rate (COMPLETED; ratio to Baseline A)",
            "",
            "| system | achieved | p50 ms | p95 ms | p99 ms | max ms | errors |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, label in (
            ("prgate", "prgate"),
            ("baseline_a", "Baseline A (Kafka, transactional)"),
            ("baseline_a0", "Baseline A0 (Kafka, no transaction)"),
            ("baseline_b", "Baseline B (gRPC)"),
        ):
            if name in fixed:
                lines.append(_latency_row(label, fixed[name], base if name == "prgate" else None))
        lines.append("")
        lag = fixed.get("baseline_b", {}).get("send_lag_ms")
        if lag:
            lines += [
                f"Load generator's own send lag behind its schedule (Baseline B step): p50 "
                f"{_ms(lag['p50'])} ms, p99 {_ms(lag['p99'])} ms; it is part of every open-loop "
                "latency above.",
                "",
            ]
    accepted = results.get("accepted")
    if accepted and "baseline_a" in fixed:
        ack = fixed["baseline_a"].get("accepted_ms", {})
        acc = accepted.get("accepted_ms", {})
        done, base_rt = accepted["latency_ms"], fixed["baseline_a"]["latency_ms"]
        lines += [
            "## ACCEPTED mode at the fixed rate (ratio: Baseline A's broker ack / round trip)",
            "",
            "| measure | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|",
            f"| durable acceptance | {_with_ratio(acc.get('p50'), ack.get('p50'))} "
            f"| {_with_ratio(acc.get('p99'), ack.get('p99'))} | {_ms(acc.get('max'))} |",
            f"| result via WatchCommand | {_with_ratio(done['p50'], base_rt['p50'])} "
            f"| {_with_ratio(done['p99'], base_rt['p99'])} | {_ms(done['max'])} |",
            "",
        ]
    top = results.get("max_throughput")
    if top and any(v for series in top.values() for v in series.values()):
        lines += [
            f"## Highest throughput with p99 <= {P99_LIMIT_MS:g} ms and no errors",
            "",
            "| series | prgate | Baseline A | prgate/A | Baseline B | prgate/B |",
            "|---|---|---|---|---|---|",
        ]
        for mode in ("closed", "open"):
            vals = {s: (top[s][mode] or {}).get("throughput") for s in SYSTEMS}
            lines.append(
                f"| {mode} loop | {vals['prgate']} | {vals['baseline_a']} | "
                f"{_x(ratio(vals['prgate'], vals['baseline_a']))} | {vals['baseline_b']} | "
                f"{_x(ratio(vals['prgate'], vals['baseline_b']))} |"
            )
        lines.append("")
    rejection = results.get("rejection")
    if rejection:
        lines += [
            "## Rejection path (closed loop; ratio to Baseline B at the same concurrency)",
            "",
            "| concurrency | prgate | p99 ms | Baseline B | p99 ms | ratio |",
            "|---|---|---|---|---|---|",
        ]
        for pg, b in zip(rejection["prgate"], rejection["baseline_b"], strict=False):
            lines.append(
                f"| {pg['concurrency']} | {pg['throughput']:.0f}/s | "
                f"{_ms(pg['latency_ms']['p99'])} | {b['throughput']:.0f}/s | "
                f"{_ms(b['latency_ms']['p99'])} | {_x(ratio(pg['throughput'], b['throughput']))} |"
            )
        lines.append("")
    if results.get("ghz"):
        lines += ghz_bench.markdown(results["ghz"])
    workers = results.get("workers")
    if workers:
        n = workers["gateway_workers"]
        by_name = {s["name"]: s for s in results.get("steps", [])}
        lines += [
            f"## Gateway with 1 and {n} worker processes (`prgate gateway --workers {n}`), "
            "back to back",
            "",
            f"| measure | 1 worker | {n} workers | ratio | gateway CPU ms/call, 1 → {n} |",
            "|---|---|---|---|---|",
        ]
        for one_name, many_name in workers["pairs"]:
            one, many = by_name[one_name], by_name[many_name]
            label = one_name.rsplit(" workers=", 1)[0]
            cpu = (
                (one.get("cpu_ms_per_call") or {}).get("gateway"),
                (many.get("cpu_ms_per_call") or {}).get("gateway"),
            )
            lines.append(
                f"| {label} (/s; p99 ms) | {one['throughput']:.0f} "
                f"({_ms(one['latency_ms']['p99'])}) | {many['throughput']:.0f} "
                f"({_ms(many['latency_ms']['p99'])}) "
                f"| {_x(ratio(many['throughput'], one['throughput']))} "
                f"| {_ms(cpu[0])} → {_ms(cpu[1])} |"
            )
        fans = workers.get("watchers") or {}
        alone = (fans.get(1) or fans.get("1") or {}).get("all_watchers_ms") or {}
        spread = (fans.get(n) or fans.get(str(n)) or {}).get("all_watchers_ms") or {}
        for key in ("p50", "p99") if spread and alone else ():
            lines.append(
                f"| fan-out to {results.get('watchers', {}).get('watchers', '')} watchers, "
                f"last arrival {key} ms | {_ms(alone.get(key))} | {_ms(spread.get(key))} "
                f"| {_x(ratio(spread.get(key), alone.get(key)))} | |"
            )
        lines.append("")
    restore = results.get("restore")
    if restore:
        raw = restore.get("bare_consumer", {}).get("per_second")
        lines += [
            f"## Restore of {restore['n']} pull requests (ratio to a bare consumer's read rate)",
            "",
            "| who | seconds | pull requests/s | ratio |",
            "|---|---|---|---|",
        ]
        for who in ("processor", "gateway_read_model", "bare_consumer"):
            if who in restore:
                r = restore[who]
                lines.append(
                    f"| {who} | {r['seconds']} | {r['per_second']} | "
                    f"{_x(ratio(r['per_second'], raw))} |"
                )
        lines += [f"\nFilled at {restore['fill_rate']}/s by a plain producer.", ""]
    serving = results.get("serving")
    if serving:
        lines += [
            f"## Gateway and processor processes on {serving['n']} pull requests",
            "",
            "Gateway: spawn to SERVING; processor: spawn to `partitions_restored` (its own "
            "restore ms in brackets). Per pull request: RSS beyond the same process on empty "
            "topics.",
            "",
            "| process | state | seconds | CPU s | RSS MiB | RSS B per pull request "
            "| per s / per CPU-s beyond empty |",
            "|---|---|---|---|---|---|---|",
        ]
        for who in ("gateway", "processor"):
            for phase in ("empty", "in_memory", "cold", "warm"):
                if phase not in serving[who]:
                    continue
                r = serving[who][phase]
                own = f" ({r['restore_ms']} ms)" if "restore_ms" in r else ""
                rates = (
                    f"{r['per_second_beyond_empty']} / {r['per_cpu_second_beyond_empty']}"
                    if "per_cpu_second_beyond_empty" in r
                    else ""
                )
                lines.append(
                    f"| {who} | {phase} | {r['seconds']}{own} | {r['cpu_seconds']} | "
                    f"{r['rss_mib']} | {r.get('rss_bytes_per_pull_request', '')} | {rates} |"
                )
        if serving.get("in_memory_skipped"):
            lines.append(f"\nIn memory: not run, {serving['in_memory_skipped']}.")
        lines.append("")
    held = results.get("held")
    if held:
        lines += [
            f"## Calls held by a frozen processor ({held['wave_size']} COMPLETED calls a wave, "
            f"{held['deadline_s']:g}s deadline): gateway RSS",
            "",
            f"Before: {held['start_mib']} MiB.",
            "",
            "| wave | peak MiB | after MiB | answers |",
            "|---|---|---|---|",
        ]
        for n, wave in enumerate(held["waves"], start=1):
            lines.append(f"| {n} | {wave['peak_mib']} | {wave['after_mib']} | {wave['codes']} |")
        lines.append("")
    if results.get("archive"):
        lines += archive_bench.markdown(results["archive"])
    watchers = results.get("watchers")
    if watchers:
        one = (watchers.get("single") or {}).get("all_watchers_ms", {})
        allw, each = watchers["all_watchers_ms"], watchers["each_watcher_ms"]
        spread = watchers["spread_ms"]
        lines += [
            f"## Fan-out to {watchers['watchers']} watchers (ms from commit; ratio to 1 watcher)",
            "",
            "| measure | p50 ms | p99 ms | max ms |",
            "|---|---|---|---|",
            f"| last of all watchers | {_with_ratio(allw['p50'], one.get('p50'))} "
            f"| {_with_ratio(allw['p99'], one.get('p99'))} | {_ms(allw['max'])} |",
            f"| each watcher | {_ms(each['p50'])} | {_ms(each['p99'])} | {_ms(each['max'])} |",
            f"| spread, first to last watcher | {_ms(spread['p50'])} | {_ms(spread['p99'])} "
            f"| {_ms(spread['max'])} |",
            f"| one watcher alone | {_ms(one.get('p50'))} | {_ms(one.get('p99'))} "
            f"| {_ms(one.get('max'))} |",
            "",
        ]
    lines += _steps_table(results.get("steps", []))
    lines += [
        "## Targets",
        "",
        "| target | wanted | measured | met |",
        "|---|---|---|---|",
    ]
    for t in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['wanted']} | {t['value']} | {met} |")
    return "\n".join(lines) + "\n"


def _steps_table(steps: list[dict[str, Any]]) -> list[str]:
    if not steps:
        return []
    lines = [
        "## Every step (CPU: cores used during the step / ms of CPU per successful call)",
        "",
        "The server is the gateway (Baseline B: the echo server), the worker the processor "
        "(Baseline A: the replier).",
        "",
        "| step | achieved | p50 | p99 | max | errors | server | worker | broker | loadgen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        cpu = s.get("cpu_cores", {})
        per = s.get("cpu_ms_per_call", {})
        server = "echo" if s["system"] == "baseline_b" else "gateway"
        worker = {"baseline_a": "replier", "baseline_a0": "replier-plain"}.get(
            s["system"], "processor"
        )
        cells = [f"{cpu.get(n)} / {_ms(per.get(n))}" for n in (server, worker, "broker", "loadgen")]
        lat = s["latency_ms"]
        lines.append(
            f"| {s['name']} | {s['throughput']:.0f}/s | {_ms(lat['p50'])} | {_ms(lat['p99'])} "
            f"| {_ms(lat['max'])} | {s['errors']} | " + " | ".join(cells) + " |"
        )
    return [*lines, ""]


# --- plot ----------------------------------------------------------------------------------


def plot(results: dict[str, Any], path: Path) -> str:
    """Latency percentiles against achieved throughput; returns the path or why it is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "not drawn (matplotlib missing: pip install -e '.[bench]')"
    steps = [s for s in results.get("steps", []) if s["kind"] in ("mix", "rr")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    for ax, mode in zip(axes, ("closed", "open"), strict=True):
        for system, label in SYSTEMS.items():
            series = [s for s in steps if s["system"] == system and s["mode"] == mode]
            series = [s for s in series if "fixed" not in s["name"]] or series
            if not series:
                continue
            xs = [s["throughput"] for s in series]
            for key, style in (("p50", "-o"), ("p99", "--s")):
                ys = [max(0.01, s["latency_ms"][key]) for s in series]
                ax.plot(xs, ys, style, color=COLORS[system], label=f"{label} {key}", ms=4)
        ax.axhline(P99_LIMIT_MS, color="grey", ls=":", lw=1)
        ax.text(ax.get_xlim()[0], P99_LIMIT_MS * 1.08, " 50 ms", color="grey", fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel("achieved throughput (calls/s)")
        ax.set_title(f"{mode}-loop steps")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, log scale)")
    axes[1].legend(fontsize=8, loc="upper left")
    m = results["machine"]
    fig.suptitle(
        f"prgate vs baselines, {m['cores']} cores, loopback, exactly-once "
        f"({results['meta']['profile']} run, {results['meta']['started']})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
