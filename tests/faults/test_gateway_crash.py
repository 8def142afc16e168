"""Gateway crash: SIGKILL a gateway with commands in flight. Their results can be watched on
another gateway instance, and the processor is unaffected."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import grpc

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import outcome_pb2
from tests.e2e.stack import GatewayProcess
from tests.faults.conftest import FaultStack, Scale
from tests.faults.load import Client, Load, first_success
from tests.faults.summary import Row
from tests.faults.verify import Ledger, verify

TERMINAL = {
    outcome_pb2.COMMAND_STATE_SUCCEEDED,
    outcome_pb2.COMMAND_STATE_REJECTED,
    outcome_pb2.COMMAND_STATE_FAILED,
}


def watch(gateway: GatewayProcess, command_id: str, timeout: float) -> tuple[str, list[int]]:
    """WatchCommand on ``gateway``: (final status code name, states streamed)."""
    states: list[int] = []
    try:
        stream = gateway.commands().WatchCommand(
            svc.WatchCommandRequest(command_id=command_id), timeout=timeout
        )
        for item in stream:
            states.append(item.receipt.state)
    except grpc.RpcError as exc:
        return exc.code().name, states  # type: ignore[attr-defined]
    return "OK", states


def watch_all(
    gateway: GatewayProcess, command_ids: list[str], timeout: float
) -> dict[str, tuple[str, list[int]]]:
    """Watch many commands at once (one thread each, bounded by ``timeout``)."""
    found: dict[str, tuple[str, list[int]]] = {}

    def one(command_id: str) -> None:
        found[command_id] = watch(gateway, command_id, timeout)

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in command_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return found


def test_gateway_sigkill_with_commands_in_flight(
    stack: FaultStack, scale: Scale, seed: int, fault_row: Row
) -> None:
    rng = random.Random(seed)
    processor = stack.processor()
    first = stack.gateway(name="g1")
    second = stack.gateway(name="g2")
    processor_pid = processor.process.pid if processor.process else None
    ledger = Ledger()
    client = Client(lambda: [first, second], ledger, deadline_s=6.0)
    first_success(client, timeout=60)

    # Every worker sends to the first gateway: all calls in flight die with it.
    load = Load(
        client, workers=scale.workers * 2, max_commands=scale.max_commands, seed=seed, pin_target=0
    )
    load.start()
    time.sleep(rng.uniform(1.0, 3.0))
    deadline = time.monotonic() + 5
    while client.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    in_flight = client.in_flight
    stack.kill(first)
    fault_row.fault("SIGKILL gateway")
    load.stop()
    fault_row.note(f"{in_flight} calls in flight at the kill")

    calls = client.snapshot()
    on_first = [c for c in calls if c.target == first.name]
    cut_off = [c for c in on_first if c.code == "UNAVAILABLE"]
    accepted_there = [c for c in on_first if c.state == "COMMAND_STATE_ACCEPTED"]
    assert cut_off, f"no call was cut off by the kill: {Counter(c.code for c in on_first)}"
    assert accepted_there, "the first gateway reported nothing ACCEPTED before the kill"

    # On the other gateway: every command the dead one ACCEPTED streams to a terminal state.
    watched = watch_all(second, sorted({c.command_id for c in accepted_there}), timeout=20)
    unresolved = {
        c: w
        for c, w in watched.items()
        if w[0] != "OK" or w[1][-1:] == [] or w[1][-1] not in TERMINAL
    }
    assert not unresolved, f"ACCEPTED commands not resolved on the other gateway: {unresolved}"
    # A call cut off in flight either reached Kafka (watchable to its end) or it did not
    # (NOT_FOUND once the other gateway gave up waiting for it); nothing in between.
    cut = watch_all(second, sorted({c.command_id for c in cut_off}), timeout=3)
    outcomes = Counter(
        "resolved" if code == "OK" and states and states[-1] in TERMINAL else code
        for code, states in cut.values()
    )
    assert set(outcomes) <= {"resolved", "NOT_FOUND", "DEADLINE_EXCEEDED"}, outcomes
    fault_row.note(
        f"watched on g2: {len(watched)} ACCEPTED on g1 all terminal; "
        f"{len(cut_off)} calls cut off or refused: {dict(outcomes)}"
    )
    # A client retries a cut-off call on the other gateway with the same idempotency key: the
    # command is applied at most once (a second copy on Kafka is answered duplicate=True).
    after = Client(lambda: [second], ledger, deadline_s=6.0)
    retried = [after.send(c.rpc, dict(c.fields), c.mode, key=c.key) for c in cut_off]
    assert {c.command_id for c in retried} == {c.command_id for c in cut_off}
    assert all(c.code in ("OK", "FAILED_PRECONDITION", "NOT_FOUND") for c in retried), retried

    # The processor did not notice: same process, and it serves the other gateway.
    assert processor.alive() and processor.process and processor.process.pid == processor_pid
    first_success(after, timeout=20)
    Load(after, workers=scale.workers, max_commands=20, seed=seed + 1).start().wait(timeout=60)
    stack.assert_alive()
    log = processor.log_path.read_text(errors="replace")
    assert "processor_failed" not in log and "Traceback" not in log

    verdict = verify(stack.kafka, ledger, result_timeout=60)
    fault_row.take(verdict, ledger.calls)
    fault_row.note(verdict.summary())
    verdict.assert_ok()
    assert sum(1 for c in after.snapshot() if c.code == "OK") >= 20
