"""A fenced producer is the coordinator's timeout abort only for a transaction open at least
``transaction.timeout.ms`` (processor/settlement.py ``BatchSettlement._timed_out``); the
whole path runs against a real cluster in
tests/faults/test_cluster_faults.py::test_sigkill_the_transaction_coordinator_mid_transaction."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError

from processor.settings import ProcessorSettings
from processor.settlement import BatchSettlement


class Settling(BatchSettlement):
    def __init__(self, fatal: KafkaError | None = None) -> None:
        self._settings = ProcessorSettings(transaction_timeout_ms=10_000)
        self._fatal = f"fatal Kafka error: {fatal}" if fatal is not None else None
        self._fatal_error = fatal


FENCED = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)


def test_an_old_transaction_fenced_was_timed_out_by_its_coordinator() -> None:
    assert Settling()._timed_out(FENCED, time.monotonic() - 11)
    assert Settling(FENCED)._timed_out(FENCED, time.monotonic() - 11)


def test_a_young_transaction_fenced_was_fenced_by_another_instance() -> None:
    assert not Settling()._timed_out(FENCED, time.monotonic() - 9)


def test_other_errors_and_other_fatal_errors_are_not_timeouts() -> None:
    timed_out = KafkaError(KafkaError._TIMED_OUT, "down", retriable=True)
    assert not Settling()._timed_out(timed_out, time.monotonic() - 60)
    other = KafkaError(KafkaError._INCONSISTENT, "bug", fatal=True)
    assert not Settling(other)._timed_out(FENCED, time.monotonic() - 60)
