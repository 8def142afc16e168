"""A restore is bounded by progress, not in total: reading that keeps going past the timeout
(a cold restore of millions of snapshots) finishes; reading that stops fails after it."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

import processor.restore as restore_module
from prgate.kafka import codec
from prgate.kafka.contract import TYPE_PULL_REQUEST
from prgate.v1.pull_request_pb2 import PullRequest
from processor.restore import RestoreError, restore_partitions
from processor.state_store import MemoryPartition

TOPIC = "t.pull-requests"
TIMEOUT_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Message:
    def __init__(self, offset: int, key: bytes | None, value: bytes | None, eof: bool) -> None:
        self._offset, self._key, self._value, self._eof = offset, key, value, eof

    def error(self) -> KafkaError | None:
        return KafkaError(KafkaError._PARTITION_EOF) if self._eof else None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Any:
        return codec.record_headers(TYPE_PULL_REQUEST)


class Consumer:
    """Hands out one snapshot per ``consume`` call, each taking ``step_s`` of the clock, then
    the partition's end; ``stall_after`` records, it returns nothing from then on."""

    def __init__(self, clock: Clock, records: int, step_s: float, stall_after: int) -> None:
        self.clock, self.records, self.step_s, self.stall_after = (
            clock,
            records,
            step_s,
            stall_after,
        )
        self.next = 0

    def assign(self, partitions: list[TopicPartition]) -> None:
        pass

    def unassign(self) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.clock.now += self.step_s
        if self.next >= self.stall_after:
            return []
        if self.next == self.records:
            self.next += 1
            return [Message(self.records, None, None, eof=True)]
        key = f"pr-{self.next}".encode()
        value = PullRequest(pull_request_id=key.decode(), version=1).SerializeToString()
        self.next += 1
        return [Message(self.next - 1, key, value, eof=False)]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(restore_module.time, "monotonic", fake)
    return fake


def test_a_restore_that_keeps_reading_outlasts_the_timeout(clock: Clock) -> None:
    # 100 records, 1 s each: ten times the timeout in total, never a second without a record.
    consumer = Consumer(clock, records=100, step_s=1.0, stall_after=10**9)
    state = MemoryPartition()
    stats = restore_partitions(consumer, TOPIC, {0: state}, TIMEOUT_S)  # type: ignore[arg-type]
    assert clock.now - 1000.0 > 10 * TIMEOUT_S
    assert stats.records == 100
    assert state.get("pr-99") is not None


def test_a_restore_that_stops_reading_fails_after_the_timeout(clock: Clock) -> None:
    consumer = Consumer(clock, records=100, step_s=1.0, stall_after=30)
    with pytest.raises(RestoreError, match="nothing read for 10s"):
        restore_partitions(consumer, TOPIC, {0: MemoryPartition()}, TIMEOUT_S)  # type: ignore[arg-type]
    # It failed a timeout after the last record, not a timeout after the start.
    assert 30 + TIMEOUT_S <= clock.now - 1000.0 <= 30 + TIMEOUT_S + 2
