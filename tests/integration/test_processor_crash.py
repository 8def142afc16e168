"""SIGKILL a processor in the middle of a stream of commands, start it again: no command is
lost or answered twice, no event is repeated or missing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from integration.processor_commands import interleave, stream_for
from integration.processor_helpers import assert_exactly_once, count_records, processor_settings
from integration.processor_runners import (
    PacedSender,
    ProcessorProcess,
    TransactionKiller,
    with_instance,
)

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings

PULL_REQUESTS = 8
COMMANDS_PER_PR = 60


@pytest.mark.parametrize(
    "successor",
    [
        # The same instance id fences the dead one and aborts its transaction at once.
        "same-instance",
        # A new id cannot fence it: the open transaction blocks read_committed readers until
        # transaction.timeout.ms, and the successor's committed-offset fetch waits for that
        # before it restores, so it never starts from state older than the offsets.
        "new-instance",
    ],
)
def test_sigkill_mid_stream_then_restart_loses_and_repeats_nothing(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path, successor: str
) -> None:
    commands = interleave(stream_for(f"pr-{n}", COMMANDS_PER_PR) for n in range(PULL_REQUESTS))
    settings = processor_settings(kafka_settings, instance_id="crashy")
    first = ProcessorProcess(settings, tmp_path, "first")
    second: ProcessorProcess | None = None
    try:
        first.wait_log('"event": "partitions_restored"', 30)
        killer = TransactionKiller(first, kafka_settings, first_burst=2)
        sender = PacedSender(kafka_settings, commands, per_second=100, burst=20, after_burst=killer)
        sender.start()
        # The kill happens while commands are still arriving, inside an open transaction.
        assert killer.killed.wait(30), f"no open transaction caught in {killer.attempts} tries"
        killer.close()
        killed_at = time.monotonic()
        assert sender.is_alive(), "the stream ended before the kill; slow the sender down"
        open_results = killer.open_records
        # Same instance id: its init_transactions fences the dead one and aborts its open
        # transaction; the partitions follow once the dead member's session expires.
        second_settings = (
            settings if successor == "same-instance" else with_instance(settings, "successor")
        )
        second = ProcessorProcess(second_settings, tmp_path, "second")
        sender.finish()
        counts = assert_exactly_once(kafka_settings, commands, timeout=60)
        recovery_s = time.monotonic() - killed_at
        assert second.terminate() == 0, second.log_text()[-2000:]
        assert '"event": "processor_stopped"' in second.log_text()
    finally:
        first.close()
        if second is not None:
            second.close()
    written = count_records(kafka_settings, ensured_topics.results, "read_uncommitted")
    print(
        f"crash test ({successor}): {counts}, results in the killed transaction={open_results}, "
        f"result records incl. aborted={written}, kill-to-all-results={recovery_s:.1f}s"
    )
    # The killed transaction's results were written, then aborted, never seen committed.
    assert written >= counts["results"] + open_results
    assert counts["commands"] == PULL_REQUESTS * COMMANDS_PER_PR
    assert counts["pull_requests"] == PULL_REQUESTS
