"""Processor crash under load: SIGKILL the processor at random moments, restart it, and
nothing the gateway reported ACCEPTED or SUCCEEDED is lost or applied twice."""

from __future__ import annotations

import random
import time
from collections import Counter

from tests.faults.conftest import FaultStack, Scale
from tests.faults.ledger import Ledger
from tests.faults.load import Client, Load, first_success
from tests.faults.summary import Row
from tests.faults.verify import assert_load_across_faults, verify

# Commands the load must get accepted (and, verified later, completed) after each kill
# before the next one, and after the last kill.
ACCEPTED_PER_KILL = 3
AFTER_LAST_KILL = 20
# ACCEPTED receipts and SUCCEEDED receipts the load must have got, each.
MIXED = 20


def answers(client: Client) -> tuple[int, int]:
    """(ACCEPTED receipts, SUCCEEDED receipts) the client got so far."""
    told = Counter(c.state for c in client.snapshot())
    return told["COMMAND_STATE_ACCEPTED"], told["COMMAND_STATE_SUCCEEDED"]


def test_processor_sigkill_under_load_loses_and_repeats_nothing(
    stack: FaultStack, scale: Scale, seed: int, fault_row: Row
) -> None:
    rng = random.Random(seed)
    processor = stack.processor()
    gateway = stack.gateway()
    ledger = Ledger()
    client = Client(lambda: [gateway], ledger, deadline_s=6.0)
    first_success(client, timeout=60)

    load = Load(client, workers=scale.workers, max_commands=scale.max_commands, seed=seed)
    load.start()
    kills: list[float] = []
    try:
        for _ in range(scale.kills):
            time.sleep(rng.uniform(0.5, 4.0))  # sometimes mid-batch, sometimes mid-restore
            stack.kill(processor)
            kills.append(fault_row.fault("SIGKILL processor"))
            time.sleep(rng.uniform(0.0, 1.0))
            # Same instance id: its transactional.id fences the killed one's open transaction.
            processor = stack.processor()
            # The load goes on across this kill before the next one (ACCEPTED-mode calls
            # need the gateway and Kafka only, so this does not wait for the restore).
            ledger.wait_accepted_since(kills[-1], ACCEPTED_PER_KILL, timeout=30)
        # ... and after the last one, against the restarted processor, until the answers
        # are mixed enough to judge (bounded).
        ledger.wait_accepted_since(kills[-1], AFTER_LAST_KILL, timeout=60)
        deadline = time.monotonic() + 60
        while min(answers(client)) < MIXED and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        load.stop()
    recovered = first_success(client, timeout=60)
    fault_row.note(f"after the last restart a COMPLETED command succeeded in {recovered:.1f}s")
    stack.assert_alive()

    verdict = verify(stack.kafka, ledger, result_timeout=60)
    fault_row.take(verdict, ledger.calls)
    told = Counter(c.state or c.code for c in client.snapshot())
    fault_row.note(f"gateway answers: {dict(told)}")
    fault_row.note(verdict.summary())
    verdict.assert_ok()
    # The load really was mixed and really ran through the kills: commands accepted and
    # completed between each kill and the next, and after the last one.
    assert min(answers(client)) >= MIXED, told
    assert_load_across_faults(
        verdict, kills, per_fault=ACCEPTED_PER_KILL, after_last=AFTER_LAST_KILL
    )
    assert verdict.completed == verdict.accepted >= 50
    assert verdict.pull_requests >= 10
