"""Load held: with the processor frozen (SIGSTOP), a flood of calls waiting for results keeps
the gateway's memory bounded: the waiting table's bound holds, RESOURCE_EXHAUSTED beyond it,
nothing is produced for a refused call, and the gateway recovers when the flood ends."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import grpc

from gateway.idempotency import open_ids_for_key
from prgate.v1 import command_service_pb2 as svc
from tests.e2e.stack import GatewayProcess
from tests.faults.conftest import FaultStack
from tests.faults.ledger import Ledger
from tests.faults.load import (
    ACCEPTED_REASONS,
    Client,
    build,
    describe_error,
    first_success,
    open_fields,
)
from tests.faults.readback import OffsetProbe
from tests.faults.summary import Row
from tests.faults.verify import verify

MAX_WAITING = 200
WAVE = 1000
DEADLINE_S = 8.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def flood(gateway: GatewayProcess, ledger: Ledger, pid: int) -> tuple[Counter[str], int, float]:
    """WAVE concurrent COMPLETED opens; returns (answers, peak RSS KiB, seconds to send)."""
    stub = gateway.commands()
    started = time.monotonic()
    calls = []
    for n in range(WAVE):
        key = uuid.uuid4().hex
        request = build("OpenPullRequest", open_fields(n), svc.RESPONSE_MODE_COMPLETED, key)
        calls.append((key, stub.OpenPullRequest.future(request, timeout=DEADLINE_S)))
    sent_in = time.monotonic() - started
    peak = rss_kib(pid)
    answers: Counter[str] = Counter()
    for key, future in calls:
        while not future.done():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.05)
        try:
            future.result(timeout=DEADLINE_S + 5)
            code, reason, command_id = "OK", "", open_ids_for_key("", key)[0]
        except grpc.RpcError as exc:
            code, _message, reason, command_id = describe_error(exc)
            command_id = command_id or open_ids_for_key("", key)[0]
        answer = f"{code}/{reason}" if reason else code
        answers[answer] += 1
        ledger.record(command_id, "OpenPullRequest", answer, accepted=reason in ACCEPTED_REASONS)
    return answers, peak, sent_in


def test_flood_of_waiting_calls_keeps_memory_bounded(stack: FaultStack, fault_row: Row) -> None:
    # A session long enough that the frozen processor keeps its partitions: a slow processor.
    processor = stack.processor(
        PRGATE_PROCESSOR_SESSION_TIMEOUT_MS="45000", PRGATE_PROCESSOR_TRANSACTION_TIMEOUT_MS="60000"
    )
    gateway = stack.gateway(PRGATE_MAX_WAITING=str(MAX_WAITING))
    assert gateway.process is not None
    pid = gateway.process.pid
    ledger = Ledger()
    client = Client(lambda: [gateway], ledger, deadline_s=DEADLINE_S)
    first_success(client, timeout=60)
    rss_start = rss_kib(pid)
    probe = OffsetProbe(stack.kafka, stack.kafka.topics.commands)
    try:
        processor.pause()
        fault_row.fault("SIGSTOP processor")
        waves = []
        for _ in range(2):
            before = probe.count()
            answers, peak, sent_in = flood(gateway, ledger, pid)
            produced = probe.count() - before
            waves.append((answers, peak, rss_kib(pid), produced, sent_in))
            fault_row.fault(f"flood of {WAVE} waiting calls")
    finally:
        processor.resume()
        probe.close()
    fault_row.fault("SIGCONT processor")

    for answers, peak, after, produced, sent_in in waves:
        waited = answers["DEADLINE_EXCEEDED/RESULT_NOT_IN_TIME"]
        assert set(answers) == {
            "DEADLINE_EXCEEDED/RESULT_NOT_IN_TIME",
            "RESOURCE_EXHAUSTED/TOO_MANY_WAITING",
        }, answers
        # The test's own precondition, not a speed target: the wave was sent within one
        # deadline, so no slot was freed during it and the count below must hold.
        assert sent_in < DEADLINE_S / 2, sent_in
        assert waited <= MAX_WAITING, answers
        assert produced == waited, f"{produced} records for {waited} accepted calls"
        fault_row.note(
            f"wave: {dict(answers)}; {produced} records produced; RSS peak {peak // 1024} MiB,"
            f" after {after // 1024} MiB (start {rss_start // 1024} MiB)"
        )
    # Memory is bounded by the waiting table's bound asserted above (at most MAX_WAITING calls
    # wait, the rest are refused without holding anything). The RSS figures are measures, not
    # asserted here: they are shown in the summary table.
    peak1, peak2 = waves[0][1], waves[1][1]
    fault_row.note(
        f"RSS growth: first wave {(peak1 - rss_start) // 1024} MiB, "
        f"second wave {(peak2 - peak1) // 1024} MiB more"
    )

    # The flood is over: the processor catches up, calls are taken and completed again.
    recovered = first_success(client, timeout=60)
    fault_row.note(f"after the flood a COMMAND SUCCEEDED within {recovered:.1f}s")
    stack.assert_alive()
    verdict = verify(stack.kafka, ledger, result_timeout=60)
    fault_row.take(verdict, ledger.calls)
    fault_row.note(verdict.summary())
    verdict.assert_ok()
    assert verdict.completed == verdict.accepted >= MAX_WAITING
