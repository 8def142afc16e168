"""Held calls: the gateway's resident memory while a flood of COMPLETED calls waits for
results that cannot come (the processor is frozen with SIGSTOP), wave after wave.

The fault test ``tests/faults/test_load_held.py`` asserts the behaviour (the waiting table's
bound holds, the rest is refused with RESOURCE_EXHAUSTED, nothing produced for a refused
call); this measures what that costs in RSS, which is a number for people to compare across
runs, not a pass/fail threshold.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc, commands_pb2

DEADLINE_S = 5.0


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _request(n: int) -> svc.OpenPullRequestRequest:
    return svc.OpenPullRequestRequest(
        command=commands_pb2.OpenPullRequest(
            repository="bench/held",
            title=f"Held {n}",
            author="ada",
            source_branch=f"held/{n}",
            target_branch="main",
        ),
        options=svc.CommandOptions(
            response_mode=svc.RESPONSE_MODE_COMPLETED, idempotency_key=uuid.uuid4().hex
        ),
    )


def _wave(stub: Any, size: int, pid: int) -> tuple[Counter[str], float]:
    """``size`` concurrent COMPLETED opens; (status codes, peak RSS MiB while they waited)."""
    futures = [stub.OpenPullRequest.future(_request(n), timeout=DEADLINE_S) for n in range(size)]
    peak = rss_mib(pid)
    codes: Counter[str] = Counter()
    for future in futures:
        while not future.done():
            peak = max(peak, rss_mib(pid))
            time.sleep(0.05)
        error = future.exception()
        codes["OK" if error is None else error.code().name] += 1
    return codes, peak


def measure(
    gateway: str, gateway_pid: int, processor_pid: int, waves: int, size: int
) -> dict[str, Any]:
    """``waves`` floods of ``size`` calls against a frozen processor; the gateway's RSS (MiB)
    before, at each wave's peak and after, and each wave's status codes."""
    channel = grpc.insecure_channel(gateway)
    stub = command_service_pb2_grpc.PullRequestCommandServiceStub(channel)
    start = rss_mib(gateway_pid)
    rows: list[dict[str, Any]] = []
    os.kill(processor_pid, signal.SIGSTOP)
    try:
        for _ in range(waves):
            codes, peak = _wave(stub, size, gateway_pid)
            rows.append(
                {
                    "codes": dict(codes),
                    "peak_mib": round(peak, 1),
                    "after_mib": round(rss_mib(gateway_pid), 1),
                }
            )
    finally:
        os.kill(processor_pid, signal.SIGCONT)
        channel.close()
    return {
        "wave_size": size,
        "deadline_s": DEADLINE_S,
        "start_mib": round(start, 1),
        "waves": rows,
        "growth_first_wave_mib": round(rows[0]["peak_mib"] - start, 1) if rows else None,
        "growth_later_waves_mib": round(rows[-1]["peak_mib"] - rows[0]["peak_mib"], 1)
        if len(rows) > 1
        else None,
    }
