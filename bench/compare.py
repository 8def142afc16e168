"""``prgate bench --compare BASE.json``: before → after of every measure of two runs.

The measures are read from two results documents (``results.json`` of ``prgate bench``):
fixed-rate latencies, ACCEPTED latencies, the highest throughput with p99 within the limit,
each step's throughput, p50, p99 and CPU per call of each process, the rejection path, the
watchers' fan-out and the restore rates. A measure present in only one run shows "-" on the
other side. Ratios are after / before: for a latency or a CPU cost lower is better, for a
throughput or a rate higher is better (the "better" column says which way it moved).
"""

from __future__ import annotations

import math
from typing import Any

# name -> (value, True when higher is better)
Measures = dict[str, tuple[float, bool]]


def _put(out: Measures, name: str, value: Any, higher_is_better: bool) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
        out[name] = (float(value), higher_is_better)


def measures(results: dict[str, Any]) -> Measures:
    """Every comparable figure of one results document, by a stable name."""
    out: Measures = {}
    for system, rec in (results.get("fixed_rate") or {}).items():
        for key in ("p50", "p99"):
            _put(out, f"fixed 100/s {system} {key} ms", rec["latency_ms"][key], False)
    accepted = results.get("accepted")
    if accepted:
        for key in ("p50", "p99"):
            _put(out, f"ACCEPTED receipt {key} ms", accepted.get("accepted_ms", {}).get(key), False)
            _put(out, f"ACCEPTED then WatchCommand {key} ms", accepted["latency_ms"][key], False)
    for system, series in (results.get("max_throughput") or {}).items():
        for mode, found in series.items():
            if found:
                _put(out, f"best {mode} loop {system} /s (p99 <= 50 ms)", found["throughput"], True)
    for step in results.get("steps", []):
        name = step["name"]
        _put(out, f"{name}: /s", step["throughput"], True)
        _put(out, f"{name}: p50 ms", step["latency_ms"]["p50"], False)
        _put(out, f"{name}: p99 ms", step["latency_ms"]["p99"], False)
        for process, ms in (step.get("cpu_ms_per_call") or {}).items():
            cores = (step.get("cpu_cores") or {}).get(process) or 0.0
            if cores >= 0.02:  # only the processes that took part in the step
                _put(out, f"{name}: CPU ms/call {process}", ms, False)
    watchers = results.get("watchers")
    if watchers:
        for key in ("p50", "p99"):
            _put(
                out,
                f"watchers fan-out last arrival {key} ms",
                watchers["all_watchers_ms"][key],
                False,
            )
    fans = (results.get("workers") or {}).get("watchers") or {}
    for workers, fan in fans.items():
        if not isinstance(fan, dict):  # a document of another shape: nothing to compare
            continue
        for key in ("p50", "p99"):
            _put(
                out,
                f"watchers fan-out, gateway workers={workers}, last arrival {key} ms",
                (fan.get("all_watchers_ms") or {}).get(key),
                False,
            )
    for system, rows in ((results.get("ghz") or {}) | {}).items():
        for key, rec in rows.items() if isinstance(rows, dict) else ():
            if isinstance(rec, dict) and "throughput" in rec:
                _put(out, f"ghz {system} {key} /s", rec["throughput"], True)
                _put(out, f"ghz {system} {key} p50 ms", rec["latency_ms"].get("p50"), False)
    for who, rec in (results.get("restore") or {}).items():
        if isinstance(rec, dict):
            _put(out, f"restore {who} /s", rec.get("per_second"), True)
    return out


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A markdown table: measure, before, after, after/before, better or worse."""
    old, new = measures(before), measures(after)
    names = list(old) + [n for n in new if n not in old]
    lines = [
        f"# prgate bench: {before['meta']['started']} → {after['meta']['started']}",
        "",
        f"Load average at start: {before['machine'].get('load_average_at_start')} → "
        f"{after['machine'].get('load_average_at_start')}.",
        "",
        "| measure | before | after | after/before | |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        a, b = old.get(name), new.get(name)
        cells = [name, _fmt(a), _fmt(b), "-", ""]
        if a and b and a[0]:
            rel = b[0] / a[0]
            cells[3] = f"{rel:.2f}x"
            if abs(rel - 1) >= 0.05:
                cells[4] = "better" if (rel > 1) == a[1] else "worse"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: tuple[float, bool] | None) -> str:
    if value is None:
        return "-"
    return f"{value[0]:,.1f}" if value[0] >= 100 else f"{value[0]:.2f}"
