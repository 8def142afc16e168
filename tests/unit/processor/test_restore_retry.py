"""A restore that meets a moving cluster (leader, coordinator or broker gone) is retried, not
fatal; an error that will not go away still ends the run."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from processor.membership import GroupMember, transient
from processor.restore import RestoreError
from processor.settings import ProcessorSettings


class Observe:
    def __init__(self) -> None:
        self.assigned_calls = 0

    def assigned(self, committed: Any) -> None:
        self.assigned_calls += 1


class Consumer:
    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return partitions


def member(failures: list[BaseException]) -> tuple[GroupMember, list[str], list[list[int]]]:
    reasons: list[str] = []
    restored: list[list[int]] = []
    group = GroupMember(
        ProcessorSettings(),
        "p1",
        Observe(),  # type: ignore[arg-type]
        on_error=lambda error: None,
        fail=reasons.append,
        failed=lambda: bool(reasons),
    )

    def restore(partitions: list[int], timeout_s: float, committed: object = None) -> None:
        if failures:
            raise failures.pop(0)
        restored.append(partitions)

    group.restore = restore  # type: ignore[method-assign]
    group._consumer = Consumer()  # type: ignore[assignment]
    return group, reasons, restored


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def test_transient_errors_of_a_moving_cluster_are_retried_with_backoff(
    no_sleep: list[float],
) -> None:
    failures: list[BaseException] = [
        KafkaException(KafkaError(KafkaError._DESTROY_BROKER)),
        KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)),
        KafkaException(KafkaError(KafkaError._TRANSPORT)),
    ]
    group, reasons, restored = member(failures)
    group._on_assign(group.consumer, [TopicPartition("t", 1), TopicPartition("t", 0)])
    assert reasons == []
    assert restored == [[0, 1]]
    assert no_sleep == [0.2, 0.4, 0.8]


def test_a_permanent_error_or_a_bad_topic_still_ends_the_run(no_sleep: list[float]) -> None:
    group, reasons, restored = member(
        [KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))]
    )
    group._on_assign(group.consumer, [TopicPartition("t", 2)])
    assert restored == [] and no_sleep == []
    assert len(reasons) == 1 and "TOPIC_AUTHORIZATION_FAILED" in reasons[0]

    group, reasons, restored = member([RestoreError("offset 7 is not a PullRequest")])
    group._on_assign(group.consumer, [TopicPartition("t", 2)])
    assert restored == [] and "not a PullRequest" in reasons[0]


def test_transient_errors_give_up_at_the_restore_deadline(
    monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]
) -> None:
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    always: list[BaseException] = [
        KafkaException(KafkaError(KafkaError._TIMED_OUT)) for _ in range(1000)
    ]
    group, reasons, restored = member(always)
    group._on_assign(group.consumer, [TopicPartition("t", 0)])
    assert restored == [] and len(reasons) == 1
    assert now[0] <= ProcessorSettings().restore_timeout_ms / 1000


def test_classification() -> None:
    assert transient(KafkaError(KafkaError._DESTROY_BROKER))
    assert transient(KafkaError(KafkaError.LEADER_NOT_AVAILABLE))
    assert not transient(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    assert not transient(KafkaError(KafkaError._TIMED_OUT, fatal=True))
