"""Whether a failed transaction committed after all, from the group's committed offsets; the
rewind to those offsets."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from processor import recovery
from processor.recovery import Verdict, batch_verdict


def test_committed_when_every_partition_of_the_batch_reached_its_end_offset() -> None:
    batch = {0: 12, 2: 40}
    assert batch_verdict(batch, {0: 12, 1: 5, 2: 40}) == (Verdict.COMMITTED, [])
    # A later commit (another batch) also means ours committed; a revoked partition is ignored.
    assert batch_verdict(batch, {0: 13, 1: 5}) == (Verdict.COMMITTED, [])


def test_aborted_when_no_partition_of_the_batch_moved() -> None:
    assert batch_verdict({0: 12, 2: 40}, {0: 10, 1: 5, 2: 33}) == (Verdict.ABORTED, [])
    assert batch_verdict({0: 12}, {0: -1001}) == (Verdict.ABORTED, [])  # nothing committed yet
    assert batch_verdict({0: 12}, {}) == (Verdict.ABORTED, [])  # no longer ours: drop


def test_mixed_names_the_partitions_to_restore_instead_of_guessing() -> None:
    assert batch_verdict({0: 12, 2: 40}, {0: 12, 2: 33}) == (Verdict.MIXED, [0, 2])


class WedgedConsumer:
    """A group consumer whose committed() keeps timing out (coordinator link not recovered)."""

    def __init__(self) -> None:
        self.tries = 0
        self.seeks: list[tuple[int, int]] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("c", 0), TopicPartition("c", 3)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.tries += 1
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))


def test_a_wedged_consumer_is_rewound_with_offsets_from_a_fresh_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)
    consumer = WedgedConsumer()
    asked: list[list[int]] = []

    def fresh(partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        asked.append([tp.partition for tp in partitions])
        return [TopicPartition("c", 0, 17), TopicPartition("c", 3, -1001)]

    offsets = recovery.rewind(consumer, threading.Event(), fresh)  # type: ignore[arg-type]
    assert consumer.tries == recovery.FRESH_AFTER_FAILURES
    assert asked == [[0, 3]]
    assert consumer.seeks == [(0, 17), (3, OFFSET_BEGINNING)]
    assert offsets == {0: 17, 3: -1001}


def test_a_stop_request_ends_a_rewind_that_cannot_succeed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = threading.Event()
    monkeypatch.setattr(time, "sleep", lambda s: stop.set())
    with pytest.raises(recovery.RewindStopped):
        recovery.rewind(WedgedConsumer(), stop)  # type: ignore[arg-type]
