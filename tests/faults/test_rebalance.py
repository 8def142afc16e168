"""Rebalance: processor instances join and leave the group during load; nothing accepted is
lost, nothing is applied twice, every snapshot is the fold of its events."""

from __future__ import annotations

import random
import time
from collections import Counter

from tests.faults.conftest import FaultStack, Scale, wait_log
from tests.faults.ledger import Ledger
from tests.faults.load import Client, Load, first_success
from tests.faults.summary import Row
from tests.faults.verify import assert_load_across_faults, verify

# Commands accepted (and completed) after each join or leave, and after the last one.
PER_FAULT = 3
AFTER_LAST = 10


def test_processors_join_and_leave_under_load(
    stack: FaultStack, scale: Scale, seed: int, fault_row: Row
) -> None:
    rng = random.Random(seed)
    running = [stack.processor("p0")]
    gateway = stack.gateway()
    ledger = Ledger()
    client = Client(lambda: [gateway], ledger, deadline_s=8.0)
    first_success(client, timeout=60)

    load = Load(client, workers=scale.workers, max_commands=scale.max_commands, seed=seed)
    load.start()
    exit_codes: list[int | None] = []
    joins: list[float] = []
    n = 0
    try:
        for _ in range(scale.rebalances):
            for _ in range(2):
                time.sleep(rng.uniform(1.0, 3.0))
                n += 1
                joined = stack.processor(f"p{n}")
                running.append(joined)
                at = fault_row.fault("processor joined")
                # The group gives it partitions (3 partitions, at most 3 members at a time).
                joins.append(wait_log(joined, "partitions_assigned", timeout=30))
                ledger.wait_accepted_since(at, PER_FAULT, timeout=30)
            for _ in range(2):
                time.sleep(rng.uniform(1.0, 3.0))
                leaving = running.pop(rng.randrange(len(running)))
                exit_codes.append(stack.stop(leaving))
                at = fault_row.fault("processor left (SIGTERM)")
                ledger.wait_accepted_since(at, PER_FAULT, timeout=30)
        # The load goes on after the last rebalance.
        ledger.wait_accepted_since(fault_row.fault_at[-1], AFTER_LAST, timeout=60)
    finally:
        load.stop()
    first_success(client, timeout=60)
    stack.assert_alive()
    assert exit_codes == [0] * len(exit_codes), (
        f"a leaving processor did not stop cleanly: {exit_codes}"
    )

    verdict = verify(stack.kafka, ledger, result_timeout=60)
    fault_row.take(verdict, ledger.calls)
    told = Counter(c.state or c.code for c in client.snapshot())
    fault_row.note(f"gateway answers: {dict(told)}; {len(running)} processor(s) at the end")
    fault_row.note(verdict.summary())
    verdict.assert_ok()
    assert verdict.completed == verdict.accepted >= 50
    assert_load_across_faults(
        verdict, fault_row.fault_at, per_fault=PER_FAULT, after_last=AFTER_LAST
    )
    fault_row.note(f"a joining processor had partitions after {max(joins):.1f}s at most")
