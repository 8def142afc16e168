"""Processor crash under load: SIGKILL the processor at random moments, restart it, and
nothing the gateway reported ACCEPTED or SUCCEEDED is lost or applied twice."""

from __future__ import annotations

import random
import time
from collections import Counter

from tests.faults.conftest import FaultStack, Scale
from tests.faults.load import Client, Load, first_success
from tests.faults.summary import Row
from tests.faults.verify import Ledger, verify


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
    try:
        for _ in range(scale.kills):
            time.sleep(rng.uniform(0.5, 4.0))  # sometimes mid-batch, sometimes mid-restore
            stack.kill(processor)
            fault_row.fault("SIGKILL processor")
            time.sleep(rng.uniform(0.0, 1.0))
            # Same instance id: its transactional.id fences the killed one's open transaction.
            processor = stack.processor()
        time.sleep(3.0)
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
    # The load really was mixed and really ran through the kills.
    assert told["COMMAND_STATE_ACCEPTED"] >= 20 and told["COMMAND_STATE_SUCCEEDED"] >= 20, told
    assert verdict.completed == verdict.accepted >= 50
    assert verdict.pull_requests >= 10
