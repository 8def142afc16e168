"""An outside load generator beside the Python one: ghz (Go), with prgate's descriptor set.

``make tools`` installs ghz (pinned, from the Go module proxy) into ``.venv/bin``. It calls
the gateway and Baseline B from the protobuf descriptors (``prgate/v1/descriptors.binpb``,
made by ``scripts/generate.py``), so its figures do not depend on the Python client at all:
the round trip (``OpenPullRequest``, COMPLETED, one new pull request per call) and the
rejection path (merges of unapproved pull requests: FAILED_PRECONDITION, which ghz counts
under its status codes, not as a failure of the run). Without the binary the scenario is
recorded as not run, with the reason, and printed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from bench.system import ROOT

DESCRIPTORS = ROOT / "prgate" / "v1" / "descriptors.binpb"
SERVICE = "prgate.v1.PullRequestCommandService"


def binary() -> str | None:
    """The ghz executable: the one ``make tools`` installed, else one on PATH; None if none."""
    local = ROOT / ".venv" / "bin" / "ghz"
    return str(local) if local.is_file() else shutil.which("ghz")


def open_data() -> dict[str, Any]:
    """An OpenPullRequest request whose source branch is new on every call (ghz template)."""
    return {
        "command": {
            "repository": "bench/ghz",
            "title": "ghz change {{.RequestNumber}}",
            "description": "Benchmark change sent by ghz.",
            "author": "ghz",
            "source_branch": "ghz/{{newUUID}}",
            "target_branch": "main",
        },
        "options": {"response_mode": "RESPONSE_MODE_COMPLETED"},
    }


def merge_data(pull_request_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    """Merges of unapproved pull requests, cycled over by ghz (a list of messages)."""
    return [
        {"command": {"pull_request_id": pr, "merged_by_user": "maintainer"}}
        for pr in pull_request_ids or ("pr-unknown",)
    ]


def run(target: str, rpc: str, data: Any, concurrency: int, seconds: float) -> dict[str, Any]:
    """One ghz run: calls/s, latency percentiles (ms) and the status codes it saw."""
    exe = binary()
    if exe is None:
        return {"not_run": "ghz is not installed (make tools)"}
    argv = [
        exe,
        "--insecure",
        "--protoset",
        str(DESCRIPTORS),
        "--call",
        f"{SERVICE}.{rpc}",
        "--data",
        json.dumps(data),
        "--concurrency",
        str(concurrency),
        "--duration",
        f"{seconds:g}s",
        "--timeout",
        "10s",
        "--format",
        "json",
        target,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0 and not done.stdout.strip():
        return {"not_run": f"ghz exited {done.returncode}: {done.stderr.strip()[-300:]}"}
    report = json.loads(done.stdout)
    percentiles = {
        f"p{int(item['percentage'])}": round(item["latency"] / 1e6, 3)
        for item in report.get("latencyDistribution") or []
        if int(item["percentage"]) in (50, 95, 99)
    }
    return {
        "rpc": rpc,
        "concurrency": concurrency,
        "throughput": round(report["rps"], 1),
        "count": report["count"],
        "latency_ms": percentiles | {"mean": round(report["average"] / 1e6, 3)},
        "status_codes": report.get("statusCodeDistribution") or {},
    }


def measure(gateway: str, echo: str, reject_ids: tuple[str, ...], seconds: float) -> dict[str, Any]:
    """The ghz rows: prgate and Baseline B, round trip at c=1 and c=16, rejection at c=64."""
    out: dict[str, Any] = {"binary": binary(), "descriptors": str(DESCRIPTORS.relative_to(ROOT))}
    for system, target in (("prgate", gateway), ("baseline_b", echo)):
        out[system] = {
            "round_trip_c1": run(target, "OpenPullRequest", open_data(), 1, seconds),
            "round_trip_c16": run(target, "OpenPullRequest", open_data(), 16, seconds),
            "reject_c64": run(target, "MergePullRequest", merge_data(reject_ids), 64, seconds),
        }
    return out


def markdown(results: dict[str, Any]) -> list[str]:
    """The ghz table of the report (ratio: prgate / Baseline B)."""
    lines = [
        "## ghz (Go load generator, descriptor set; ratio prgate / Baseline B)",
        "",
        "| measure | prgate | p50 / p99 ms | Baseline B | p50 / p99 ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("round_trip_c1", "OpenPullRequest COMPLETED, c=1"),
        ("round_trip_c16", "OpenPullRequest COMPLETED, c=16"),
        ("reject_c64", "rejection path (MergePullRequest refused), c=64"),
    ):
        pg, b = results["prgate"][key], results["baseline_b"][key]
        if "not_run" in pg or "not_run" in b:
            lines.append(f"| {label} | {pg.get('not_run', '')} | | {b.get('not_run', '')} | | |")
            continue
        rel = pg["throughput"] / b["throughput"] if b["throughput"] else float("nan")
        lines.append(
            f"| {label} | {pg['throughput']:.0f}/s | {pg['latency_ms'].get('p50')} / "
            f"{pg['latency_ms'].get('p99')} | {b['throughput']:.0f}/s | "
            f"{b['latency_ms'].get('p50')} / {b['latency_ms'].get('p99')} | {rel:.2f}x |"
        )
    return [*lines, f"\nCodes seen by ghz (prgate): {_codes(results['prgate'])}", ""]


def _codes(system: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v.get('status_codes')}" for k, v in system.items())
