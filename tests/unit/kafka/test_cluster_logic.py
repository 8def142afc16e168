"""Pure logic of the local cluster and the topic durability rules (no broker)."""

from __future__ import annotations

import pytest

from prgate.kafka.cluster import coordinator_partition, java_string_hash
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topic_checks import (
    Durability,
    TopicContractError,
    TopicState,
    durability,
    durability_problems,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    # Values of java.lang.String#hashCode (JLS: s[0]*31^(n-1) + ... + s[n-1], int overflow).
    [("", 0), ("a", 97), ("hello", 99162322), ("polygenelubricants", -(2**31)),
     ("hello world", 1794106052), ("Aa", 2112), ("BB", 2112)],
)  # fmt: skip
def test_java_string_hash(text: str, expected: int) -> None:
    assert java_string_hash(text) == expected


def test_coordinator_partition_is_kafkas_utils_abs_modulo() -> None:
    assert coordinator_partition("hello", 50) == 99162322 % 50
    assert coordinator_partition("polygenelubricants", 5) == 0  # Utils.abs(MIN_VALUE) is 0
    # A negative hash uses its absolute value ("zzzzzz".hashCode() is negative in Java).
    value = java_string_hash("zzzzzz")
    assert value < 0 and coordinator_partition("zzzzzz", 7) == (-value) % 7


@pytest.mark.parametrize(
    ("brokers", "replication", "min_isr", "expected"),
    [(1, 0, 0, (1, 1)), (2, 0, 0, (1, 1)), (3, 0, 0, (3, 2)), (5, 0, 0, (3, 2)),
     (3, 2, 0, (2, 1)), (3, 3, 3, (3, 3)), (1, 0, 1, (1, 1))],
)  # fmt: skip
def test_durability_defaults_follow_the_cluster(
    brokers: int, replication: int, min_isr: int, expected: tuple[int, int]
) -> None:
    kafka = KafkaSettings(replication_factor=replication, min_insync_replicas=min_isr)
    assert durability(kafka, brokers) == Durability(*expected)


def test_durability_refuses_min_isr_above_replicas() -> None:
    with pytest.raises(TopicContractError, match="above the replication factor 1"):
        durability(KafkaSettings(min_insync_replicas=2), brokers=1)


def state(replicas: int, **configs: str) -> TopicState:
    return TopicState("t.commands", 3, replicas, configs)


def test_durability_problems_name_each_weakness() -> None:
    wanted = Durability(3, 2)
    assert durability_problems(state(3, **{"min.insync.replicas": "2"}), wanted) == []
    assert durability_problems(state(3, **{"min.insync.replicas": "3"}), wanted) == []
    (fewer,) = durability_problems(state(1, **{"min.insync.replicas": "2"}), wanted)[:1]
    assert "replication factor 1, expected at least 3" in fewer
    (low,) = durability_problems(state(3, **{"min.insync.replicas": "1"}), wanted)
    assert "min.insync.replicas=1, expected at least 2" in low
    (above,) = durability_problems(state(3, **{"min.insync.replicas": "4"}), Durability(3, 2))
    assert "above its 3 replicas" in above
    (unclean,) = durability_problems(
        state(3, **{"min.insync.replicas": "2", "unclean.leader.election.enable": "true"}), wanted
    )
    assert "unclean.leader.election.enable=true" in unclean
