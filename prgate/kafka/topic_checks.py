"""The contract checks of the project's topics: pure logic over what the cluster reported.

:func:`find_problems` compares :class:`TopicState` (read by prgate/kafka/topics.py) with the
contract's :class:`TopicSpec`: a cleanup policy other than the contract's, co-partitioned topics
(commands, events, pull-requests) with different partition counts, and a topic less durable
than the :class:`Durability` the settings ask for (:func:`durability_problems`) are problems
(:class:`TopicContractError`); other differences are logged as warnings. No Kafka I/O here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prgate.kafka.contract import Topics, TopicSpec
from prgate.kafka.settings import KafkaSettings

log = logging.getLogger(__name__)

UNCLEAN = "unclean.leader.election.enable"


class TopicContractError(Exception):
    """Existing topics contradict the contract; ``problems`` holds one sentence per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("topic contract violated:\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class TopicState:
    """What a topic looks like on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)
    # The smallest in-sync replica set over the partitions, and how many partitions have
    # fewer in-sync replicas than replicas (-1: not read).
    min_in_sync: int = -1
    under_replicated: int = -1


@dataclass(frozen=True)
class Durability:
    """How many copies every contract topic keeps and how many must have a record before the
    broker acknowledges it to an ``acks=all`` producer."""

    replication_factor: int
    min_insync_replicas: int


def durability(kafka: KafkaSettings, brokers: int) -> Durability:
    """The settings' replication factor and ``min.insync.replicas``, defaults resolved against
    the cluster's ``brokers``: 3 and 2 with at least 3 brokers, else 1 and 1. Raises
    TopicContractError when they cannot work (min.insync.replicas above replicas)."""
    replication = kafka.replication_factor or (3 if brokers >= 3 else 1)
    min_isr = kafka.min_insync_replicas or (2 if replication >= 3 else 1)
    if min_isr > replication:
        raise TopicContractError(
            [
                f"min.insync.replicas={min_isr} is above the replication factor {replication}: "
                "no acks=all write could ever succeed"
            ]
        )
    return Durability(replication, min_isr)


def _normalize_policy(policy: str) -> str:
    return ",".join(sorted(p.strip() for p in policy.split(",") if p.strip()))


def allowed_policies(spec: TopicSpec, topics: Topics | None = None) -> set[str]:
    """Cleanup policies accepted for ``spec``: its own; results may also be compact,delete."""
    allowed = {_normalize_policy(spec.cleanup_policy)}
    if topics is not None and spec.name == topics.results:
        allowed.add("compact,delete")
    return allowed


def durability_problems(state: TopicState, wanted: Durability) -> list[str]:
    """Why ``state`` keeps records less safely than ``wanted`` (empty when it does not)."""
    problems: list[str] = []
    if state.replication_factor < wanted.replication_factor:
        problems.append(
            f"topic {state.name} has replication factor {state.replication_factor}, expected at "
            f"least {wanted.replication_factor} (PRGATE_REPLICATION_FACTOR)"
        )
    raw = state.configs.get("min.insync.replicas", "")
    min_isr = int(raw) if raw.isdigit() else None
    if min_isr is not None and min_isr < wanted.min_insync_replicas:
        problems.append(
            f"topic {state.name} has min.insync.replicas={min_isr}, expected at least "
            f"{wanted.min_insync_replicas} (PRGATE_MIN_INSYNC_REPLICAS)"
        )
    if min_isr is not None and min_isr > state.replication_factor:
        problems.append(
            f"topic {state.name} has min.insync.replicas={min_isr} above its "
            f"{state.replication_factor} replicas: no acks=all write can succeed"
        )
    if state.configs.get(UNCLEAN, "false").strip().lower() == "true":
        problems.append(
            f"topic {state.name} has {UNCLEAN}=true: a replica that missed acknowledged records "
            f"could become leader and drop them; expected {UNCLEAN}=false"
        )
    return problems


def find_problems(
    specs: Sequence[TopicSpec],
    states: Mapping[str, TopicState | None],
    topics: Topics | None = None,
    wanted: Durability | None = None,
) -> list[str]:
    """Contract violations of ``states`` (None = missing) against ``specs`` and, when given,
    the ``wanted`` durability; logs soft ones."""
    problems: list[str] = []
    for spec in specs:
        state = states.get(spec.name)
        if state is None:
            problems.append(f"topic {spec.name} is missing; run `prgate topics ensure`")
            continue
        if wanted is not None:
            problems.extend(durability_problems(state, wanted))
        actual = _normalize_policy(state.configs.get("cleanup.policy", ""))
        allowed = allowed_policies(spec, topics)
        if actual not in allowed:
            problems.append(
                f"topic {spec.name} has cleanup.policy={actual or '(unknown)'}, "
                f"expected cleanup.policy={' or '.join(sorted(allowed))}"
            )
        for key, expected in spec.configs.items():
            if key != "cleanup.policy" and state.configs.get(key, expected) != expected:
                log.warning(
                    "topic_config_differs",
                    extra={
                        "topic": spec.name,
                        "config": key,
                        "expected": expected,
                        "actual": state.configs.get(key),
                    },
                )
        if spec.co_partitioned and state.partitions != spec.partitions:
            log.warning(
                "topic_partitions_differ",
                extra={
                    "topic": spec.name,
                    "configured": spec.partitions,
                    "actual": state.partitions,
                },
            )
    counts = {
        s.name: states[s.name].partitions  # type: ignore[union-attr]
        for s in specs
        if s.co_partitioned and states.get(s.name) is not None
    }
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in counts.items())
        problems.append(
            f"co-partitioned topics have different partition counts ({listed}); commands, "
            "events and snapshots of one pull request must share one partition number"
        )
    return problems
