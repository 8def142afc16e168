"""The consumer watchdog: a wedged consumer is noticed, a quiet topic or an outage is not."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from confluent_kafka import IsolationLevel, KafkaError, KafkaException, TopicPartition

from processor.watchdog import ConsumerWatchdog, lagging_partitions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watchdog(clock: Clock, answers: list[dict[int, tuple[int, int]] | None]) -> ConsumerWatchdog:
    def lagging(consumer: Any, timeout: float) -> dict[int, tuple[int, int]] | None:
        return answers.pop(0) if len(answers) > 1 else answers[0]  # the last one repeats

    return ConsumerWatchdog(stall_s=20, check_every_s=5, clock=clock, lagging=lagging)


def run_idle(dog: ConsumerWatchdog, clock: Clock, seconds: float) -> list[str]:
    """consume() returns nothing every 0.1 s for ``seconds``; the alarms raised meanwhile."""
    alarms = []
    end = clock.now + seconds
    while clock.now < end:
        clock.now += 0.1
        reason = dog.idle(None)  # type: ignore[arg-type]
        if reason is not None:
            alarms.append(reason)
    return alarms


def test_records_waiting_but_nothing_delivered_for_the_stall_time_is_wedged() -> None:
    clock = Clock()
    dog = watchdog(clock, [{1: (46, 60)}])
    assert run_idle(dog, clock, 24) == []  # first seen behind at ~5 s: not yet 20 s
    (alarm,) = run_idle(dog, clock, 6)
    assert "1@46<60" in alarm and "nothing consumed for 20s" in alarm
    # The next alarm waits twice as long (a false alarm must not churn the group).
    assert run_idle(dog, clock, 39) == []
    assert len(run_idle(dog, clock, 10)) == 1


def test_a_caught_up_consumer_an_outage_or_delivered_records_raise_no_alarm() -> None:
    clock = Clock()
    assert run_idle(watchdog(clock, [{}]), clock, 120) == []  # nothing to read
    assert run_idle(watchdog(clock, [None]), clock, 120) == []  # brokers unreachable
    behind = {0: (5, 9)}
    dog = watchdog(clock, [behind, behind, behind, None, behind])  # one unknown resets
    assert run_idle(dog, clock, 30) == []
    dog = watchdog(clock, [behind])
    for _ in range(12):  # records arrive now and then, each time a little behind again
        assert run_idle(dog, clock, 9) == []
        dog.delivered()


class FakeConsumer:
    def __init__(self, positions: dict[int, int], committed: dict[int, int]) -> None:
        self._positions = positions
        self._committed = committed

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("c", p) for p in self._positions]

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition("c", tp.partition, self._positions[tp.partition]) for tp in tps]

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition("c", tp.partition, self._committed[tp.partition]) for tp in tps]

    def get_watermark_offsets(self, *args: Any, **kwargs: Any) -> tuple[int, int]:
        # On the consumer's fetch connection, behind the fetch the broker holds: never asked.
        raise AssertionError("the watchdog must not query through the consumer")


class FakeAdmin:
    """ListOffsets answers: log start ``low``, read_committed end ``high`` per partition."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.fail = False
        self.asked: list[tuple[list[int], str, Any]] = []

    def list_offsets(
        self, request: dict[TopicPartition, Any], isolation_level: Any, request_timeout: float
    ) -> dict[TopicPartition, Future[Any]]:
        kinds = {str(spec) for spec in request.values()}
        assert len(kinds) == 1, kinds
        kind = "earliest" if "EARLIEST" in kinds.pop().upper() else "latest"
        self.asked.append((sorted(tp.partition for tp in request), kind, isolation_level))
        answers: dict[TopicPartition, Future[Any]] = {}
        for tp in request:
            future: Future[Any] = Future()
            if self.fail:
                future.set_exception(KafkaException(KafkaError(KafkaError._TIMED_OUT)))
            else:
                offset = self.low if kind == "earliest" else self.high
                future.set_result(SimpleNamespace(offset=offset))
            answers[tp] = future
        return answers


def test_lagging_partitions_compares_position_or_committed_offset_with_the_stable_end() -> None:
    consumer = FakeConsumer({0: 10, 1: -1001, 2: -1001}, {1: 7, 2: -1001})
    admin = FakeAdmin(low=2, high=10)
    assert lagging_partitions(consumer, admin, 1.0) == {1: (7, 10), 2: (2, 10)}  # type: ignore[arg-type]
    # One ListOffsets of the read_committed ends, one of the log starts for the partition
    # with neither a position nor a committed offset.
    assert admin.asked == [
        ([0, 1, 2], "latest", IsolationLevel.READ_COMMITTED),
        ([2], "earliest", IsolationLevel.READ_COMMITTED),
    ]
    admin.fail = True
    assert lagging_partitions(consumer, admin, 1.0) is None  # type: ignore[arg-type]
