"""Gateway crash: SIGKILL a gateway with commands in flight. Their results can be watched on
another gateway instance, and the processor is unaffected."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import grpc
import pytest

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import outcome_pb2
from tests.e2e.stack import GatewayProcess
from tests.faults.conftest import FaultStack, Scale
from tests.faults.ledger import Ledger
from tests.faults.load import Client, Load, describe_error, first_success
from tests.faults.summary import Row
from tests.faults.verify import assert_load_after, verify

TERMINAL = {
    outcome_pb2.COMMAND_STATE_SUCCEEDED,
    outcome_pb2.COMMAND_STATE_REJECTED,
    outcome_pb2.COMMAND_STATE_FAILED,
}


def watch(gateway: GatewayProcess, command_id: str, timeout: float) -> tuple[str, list[int]]:
    """WatchCommand on ``gateway``: (final status, states streamed). The status is the code
    name, with the gateway's ErrorInfo reason after a slash for DEADLINE_EXCEEDED
    (``"DEADLINE_EXCEEDED/RESULT_NOT_IN_TIME"``); a bare ``"DEADLINE_EXCEEDED"`` is the
    client's own deadline, i.e. the gateway never answered."""
    states: list[int] = []
    try:
        stream = gateway.commands().WatchCommand(
            svc.WatchCommandRequest(command_id=command_id), timeout=timeout
        )
        for item in stream:
            states.append(item.receipt.state)
    except grpc.RpcError as exc:
        code, _message, reason, _ = describe_error(exc)
        return (f"{code}/{reason}" if code == "DEADLINE_EXCEEDED" and reason else code), states
    return "OK", states


def cut_off_outcome(code: str, states: list[int]) -> str:
    """What a watch of a cut-off command found: ``"resolved"`` (a terminal state), else the
    status; only ``"resolved"`` and ``"NOT_FOUND"`` are answers (never the client's deadline)."""
    return "resolved" if code == "OK" and states and states[-1] in TERMINAL else code


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
    while client.in_flight_on[first.name] < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    in_flight = client.in_flight_on[first.name]
    stack.kill(first)
    killed_at = fault_row.fault("SIGKILL gateway")
    load.stop()
    fault_row.note(f"{in_flight} calls in flight at the kill")
    assert in_flight >= 1, "no call was in flight on the gateway when it was killed"

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
    # The other gateway answers NOT_FOUND just before the watch's deadline (reply_budget's
    # margin); the client's own DEADLINE_EXCEEDED would mean it never answered: a hang.
    cut = watch_all(second, sorted({c.command_id for c in cut_off}), timeout=4)
    outcomes = Counter(cut_off_outcome(code, states) for code, states in cut.values())
    assert set(outcomes) <= {"resolved", "NOT_FOUND"}, outcomes
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
    # Commands accepted and completed after the kill (through the other gateway).
    assert_load_after(verdict, killed_at, min_accepted=10, min_completed=10, what="the kill")


@pytest.mark.parametrize(
    ("code", "states", "answer"),
    [
        ("OK", [outcome_pb2.COMMAND_STATE_ACCEPTED, outcome_pb2.COMMAND_STATE_SUCCEEDED], True),
        ("NOT_FOUND", [], True),
        ("DEADLINE_EXCEEDED", [], False),  # the client's deadline: the gateway hung
        ("OK", [outcome_pb2.COMMAND_STATE_ACCEPTED], False),  # ended without a terminal state
    ],
)
def test_a_hung_watch_of_a_cut_off_command_is_not_an_answer(
    code: str, states: list[int], answer: bool
) -> None:
    """The judge of the cut-off watches itself (no processes)."""
    assert (cut_off_outcome(code, states) in {"resolved", "NOT_FOUND"}) is answer
