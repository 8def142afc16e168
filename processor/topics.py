"""Create and verify the project's topics (the Kafka contract of DESIGN.md) with the AdminClient.

``ensure_topics`` creates what is missing and then verifies everything; ``check_topics`` only
verifies, for the processor and gateway at start; ``describe_topics`` reads back what exists.
Verification refuses, with :class:`TopicContractError`, a topic whose cleanup policy differs from
the contract (compaction is only correct on a topic of whole entities) and co-partitioned topics
(commands, events, pull-requests) whose partition counts differ. Other differences (retention,
partition count versus the setting) are logged as warnings: operators may tune them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException

# Public API of confluent-kafka (documented there), but its admin/__init__ has no __all__.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from prgate.kafka_settings import KafkaSettings
from processor.contract import Topics, TopicSpec

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
# Configs `describe` shows; everything is in TopicState.configs.
SHOWN_CONFIGS = ("cleanup.policy", "retention.ms", "min.compaction.lag.ms", "min.insync.replicas")


class TopicContractError(Exception):
    """Existing topics contradict the contract; ``problems`` holds one sentence per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("topic contract violated:\n  - " + "\n  - ".join(self.problems))


class TopicAdminError(Exception):
    """Kafka did not answer an admin request in time, or refused it."""


@dataclass(frozen=True)
class TopicState:
    """What a topic looks like on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)


def contract_specs(
    kafka: KafkaSettings,
    *,
    events_retention_ms: int | None = None,
    results_partitions: int | None = None,
) -> list[TopicSpec]:
    """The five topics for these settings (prefix and partition count)."""
    kwargs: dict[str, Any] = {"results_partitions": results_partitions}
    if events_retention_ms is not None:
        kwargs["events_retention_ms"] = events_retention_ms
    return kafka.topics.specs(kafka.partitions, **kwargs)


def _admin(kafka: KafkaSettings) -> AdminClient:
    # librdkafka logs through Python logging, so connection errors are structured lines too.
    return AdminClient(kafka.client_config(logger=logging.getLogger("prgate.librdkafka")))


def _normalize_policy(policy: str) -> str:
    return ",".join(sorted(p.strip() for p in policy.split(",") if p.strip()))


def allowed_policies(spec: TopicSpec, topics: Topics | None = None) -> set[str]:
    """Cleanup policies accepted for ``spec``: its own; results may also be compact,delete."""
    allowed = {_normalize_policy(spec.cleanup_policy)}
    if topics is not None and spec.name == topics.results:
        allowed.add("compact,delete")
    return allowed


def find_problems(
    specs: Sequence[TopicSpec],
    states: Mapping[str, TopicState | None],
    topics: Topics | None = None,
) -> list[str]:
    """Contract violations of ``states`` (None = missing) against ``specs``; logs soft ones."""
    problems: list[str] = []
    for spec in specs:
        state = states.get(spec.name)
        if state is None:
            problems.append(f"topic {spec.name} is missing; run `prgate topics ensure`")
            continue
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
                    "event=topic_config_differs topic=%s config=%s expected=%s actual=%s",
                    spec.name,
                    key,
                    expected,
                    state.configs.get(key),
                )
        if spec.co_partitioned and state.partitions != spec.partitions:
            log.warning(
                "event=topic_partitions_differ topic=%s configured=%d actual=%d",
                spec.name,
                spec.partitions,
                state.partitions,
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


def read_states(
    admin: AdminClient, names: Sequence[str], timeout: float
) -> dict[str, TopicState | None]:
    """Partitions, replication factor and configs of ``names`` (None for a missing topic)."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TopicAdminError(
            f"Kafka did not answer a metadata request in {timeout:.0f}s: {exc}"
        ) from exc
    present = [n for n in names if n in metadata.topics and metadata.topics[n].error is None]
    configs: dict[str, dict[str, str]] = {}
    if present:
        resources = [ConfigResource(ResourceType.TOPIC, n) for n in present]
        futures = admin.describe_configs(resources, request_timeout=timeout)
        for resource, future in futures.items():
            try:
                entries = future.result(timeout=timeout)
            except (KafkaException, TimeoutError) as exc:
                raise TopicAdminError(f"describe configs of {resource.name} failed: {exc}") from exc
            configs[resource.name] = {k: str(e.value) for k, e in entries.items()}
    states: dict[str, TopicState | None] = {}
    for name in names:
        if name not in configs:
            states[name] = None
            continue
        partitions = metadata.topics[name].partitions
        first = partitions[min(partitions)] if partitions else None
        states[name] = TopicState(
            name=name,
            partitions=len(partitions),
            replication_factor=len(first.replicas) if first is not None else 0,
            configs=configs[name],
        )
    return states


def _create(admin: AdminClient, new: list[NewTopic], timeout: float) -> None:
    futures = admin.create_topics(
        new, operation_timeout=timeout, request_timeout=timeout, validate_only=False
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            log.info("event=topic_created topic=%s", name)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                log.info("event=topic_exists_already topic=%s", name)  # created concurrently
                continue
            raise TopicAdminError(f"creating topic {name} failed: {exc}") from exc
        except TimeoutError as exc:
            raise TopicAdminError(f"creating topic {name} timed out after {timeout:.0f}s") from exc


def _verified(
    admin: AdminClient,
    specs: Sequence[TopicSpec],
    topics: Topics | None,
    timeout: float,
    settle: float,
) -> dict[str, TopicState | None]:
    """Read the states, for up to ``settle`` s until all are visible (creation may lag), verify."""
    deadline = time.monotonic() + settle
    names = [s.name for s in specs]
    while True:
        states = read_states(admin, names, timeout)
        if all(states[n] is not None for n in names) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problems = find_problems(specs, states, topics)
    if problems:
        raise TopicContractError(problems)
    return states


def ensure_topics(
    kafka: KafkaSettings,
    *,
    specs: Sequence[TopicSpec] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[TopicState]:
    """Create the missing contract topics, then verify all of them.

    Replication factor is min(3, brokers). A missing co-partitioned topic gets the partition
    count of the existing co-partitioned ones, so a half-created set can be completed.
    Raises TopicContractError on a contract violation, TopicAdminError on timeouts.
    """
    specs = list(specs or contract_specs(kafka))
    admin = _admin(kafka)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TopicAdminError(
            f"Kafka at {kafka.bootstrap_servers} did not answer in {timeout:.0f}s: {exc}"
        ) from exc
    replication = max(1, min(3, len(metadata.brokers)))
    existing_counts = {
        len(metadata.topics[s.name].partitions)
        for s in specs
        if s.co_partitioned and s.name in metadata.topics
    }
    follow = next(iter(existing_counts)) if len(existing_counts) == 1 else None
    new: list[NewTopic] = []
    for spec in specs:
        if spec.name in metadata.topics:
            continue
        partitions = spec.partitions
        if spec.co_partitioned and follow is not None:
            partitions = follow
            if partitions != spec.partitions:
                log.warning(
                    "event=topic_partitions_follow_existing topic=%s partitions=%d configured=%d",
                    spec.name,
                    partitions,
                    spec.partitions,
                )
        configs = {"min.insync.replicas": str(max(1, replication - 1)), **spec.configs}
        new.append(NewTopic(spec.name, partitions, replication, config=configs))
    if new:
        _create(admin, new, timeout)
    states = _verified(admin, specs, kafka.topics, timeout, settle=timeout if new else 0.0)
    log.info(
        "event=topics_ok count=%d replication=%d created=%d", len(specs), replication, len(new)
    )
    return [s for s in states.values() if s is not None]


def check_topics(
    kafka: KafkaSettings,
    *,
    specs: Sequence[TopicSpec] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[TopicState]:
    """Verify without creating anything: for the processor and gateway at start."""
    specs = list(specs or contract_specs(kafka))
    states = _verified(_admin(kafka), specs, kafka.topics, timeout, settle=0.0)
    return [s for s in states.values() if s is not None]


def describe_topics(
    kafka: KafkaSettings,
    *,
    specs: Sequence[TopicSpec] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, TopicState | None]:
    """The contract topics as they are on the cluster (None for a missing one)."""
    specs = list(specs or contract_specs(kafka))
    return read_states(_admin(kafka), [s.name for s in specs], timeout)


def format_states(states: Mapping[str, TopicState | None]) -> str:
    """A plain-text table of ``states`` for ``prgate topics describe``."""
    header = ("topic", "partitions", "replicas", *SHOWN_CONFIGS)
    rows: list[tuple[str, ...]] = [header]
    for name, state in states.items():
        if state is None:
            rows.append((name, "MISSING", "", *("" for _ in SHOWN_CONFIGS)))
        else:
            shown = (state.configs.get(k, "") for k in SHOWN_CONFIGS)
            rows.append((name, str(state.partitions), str(state.replication_factor), *shown))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
