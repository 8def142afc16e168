"""Create and verify the project's topics (docs/contract.md) with the AdminClient.

``ensure_topics`` creates what is missing and then verifies everything; ``check_topics`` only
verifies, for the processor and gateway at start; ``describe_topics`` reads back what exists;
``max_message_bytes`` reads the size limits the processor checks its records against.
Verification refuses, with :class:`TopicContractError`, a topic whose cleanup policy differs from
the contract (compaction is only correct on a topic of whole entities), co-partitioned topics
(commands, events, pull-requests) whose partition counts differ, and a topic less durable than
the :class:`Durability` the settings ask for (fewer replicas, a lower ``min.insync.replicas``,
one above its replica count, or ``unclean.leader.election.enable=true``). Other differences
(retention, partition count versus the setting) are logged as warnings: operators may tune them.
The checks themselves (pure, no Kafka I/O) are prgate/kafka/topic_checks.py; this module talks
to Kafka.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException

# Public API of confluent-kafka (documented there), but its admin/__init__ has no __all__.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from prgate.kafka.contract import Topics, TopicSpec
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topic_checks import (
    UNCLEAN,
    Durability,
    TopicContractError,
    TopicState,
    durability,
    find_problems,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
# Configs `describe` shows; everything is in TopicState.configs.
SHOWN_CONFIGS = ("cleanup.policy", "retention.ms", "min.compaction.lag.ms", "min.insync.replicas")


class TopicAdminError(Exception):
    """Kafka did not answer an admin request in time, or refused it."""


def contract_specs(
    kafka: KafkaSettings,
    *,
    events_retention_ms: int | None = None,
    results_partitions: int | None = None,
) -> list[TopicSpec]:
    """The six topics for these settings (prefix and partition count)."""
    kwargs: dict[str, Any] = {"results_partitions": results_partitions}
    if events_retention_ms is not None:
        kwargs["events_retention_ms"] = events_retention_ms
    return kafka.topics.specs(kafka.partitions, **kwargs)


def _admin(kafka: KafkaSettings) -> AdminClient:
    # librdkafka logs through Python logging (this module's logger), so connection errors are
    # structured lines too.
    return AdminClient(kafka.client_config())


def list_topics(admin: AdminClient, timeout: float) -> Any:
    """``admin.list_topics(timeout=timeout)`` (every topic: asking for one by name could make
    a broker auto-create it), asked on a daemon thread while the calling thread waits in
    Python: a ``list_topics`` blocked in librdkafka holds off KeyboardInterrupt (Ctrl-C) for
    the whole timeout, while this wait is interrupted at once. One request with the whole
    timeout, not several short ones, so a slow cluster answers as before. Raises what
    ``list_topics`` raised (KafkaException when the brokers do not answer in time)."""
    answer: list[Any] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def ask() -> None:
        try:
            answer.append(admin.list_topics(timeout=timeout))
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=ask, name="kafka-metadata", daemon=True).start()
    done.wait()
    if failure:
        raise failure[0]
    return answer[0]


def read_states(
    admin: AdminClient, names: Sequence[str], timeout: float
) -> dict[str, TopicState | None]:
    """Partitions, replication factor and configs of ``names`` (None for a missing topic)."""
    try:
        metadata = list_topics(admin, timeout)
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
            except KafkaException as exc:
                error = exc.args[0]
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                ):
                    # On a cluster the broker asked may not know a just-created topic yet that
                    # the metadata answer (from another broker) listed: not there yet.
                    continue
                raise TopicAdminError(f"describe configs of {resource.name} failed: {exc}") from exc
            except TimeoutError as exc:
                raise TopicAdminError(f"describe configs of {resource.name} failed: {exc}") from exc
            configs[resource.name] = {k: str(e.value) for k, e in entries.items()}
    states: dict[str, TopicState | None] = {}
    for name in names:
        if name not in configs:
            states[name] = None
            continue
        partitions = metadata.topics[name].partitions
        first = partitions[min(partitions)] if partitions else None
        in_sync = [len(p.isrs) for p in partitions.values()]
        states[name] = TopicState(
            name=name,
            partitions=len(partitions),
            replication_factor=len(first.replicas) if first is not None else 0,
            configs=configs[name],
            min_in_sync=min(in_sync, default=0),
            under_replicated=sum(1 for p in partitions.values() if set(p.isrs) != set(p.replicas)),
        )
    return states


def topic_partitions(admin: AdminClient, topic: str, timeout: float) -> list[int] | None:
    """The partition numbers of ``topic``, sorted; None when it does not exist (or has none).

    Lists all topics: asking for one by name lets a broker with ``auto.create.topics.enable``
    create it, and readers must never create a topic. Raises KafkaException when the brokers
    do not answer within ``timeout`` seconds; Ctrl-C is seen meanwhile (:func:`list_topics`).
    """
    described = list_topics(admin, timeout).topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        return None
    return sorted(described.partitions)


def broker_count(admin: AdminClient, timeout: float) -> int:
    """Brokers the cluster's metadata lists."""
    try:
        return len(list_topics(admin, timeout).brokers)
    except KafkaException as exc:
        raise TopicAdminError(
            f"Kafka did not answer a metadata request in {timeout:.0f}s: {exc}"
        ) from exc


def _create(admin: AdminClient, new: list[NewTopic], timeout: float) -> None:
    futures = admin.create_topics(
        new, operation_timeout=timeout, request_timeout=timeout, validate_only=False
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            log.info("topic_created", extra={"topic": name})
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                log.info("topic_exists_already", extra={"topic": name})  # created concurrently
                continue
            raise TopicAdminError(f"creating topic {name} failed: {exc}") from exc
        except TimeoutError as exc:
            raise TopicAdminError(f"creating topic {name} timed out after {timeout:.0f}s") from exc


def _verified(
    admin: AdminClient,
    specs: Sequence[TopicSpec],
    topics: Topics | None,
    timeout: float,
    *,
    settle: float,
    wanted: Durability,
) -> dict[str, TopicState | None]:
    """Read the states, for up to ``settle`` s until all are visible (creation may lag), verify."""
    deadline = time.monotonic() + settle
    names = [s.name for s in specs]
    while True:
        states = read_states(admin, names, timeout)
        if all(states[n] is not None for n in names) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    problems = find_problems(specs, states, topics, wanted)
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

    New topics get the settings' :func:`durability` (replication factor and
    ``min.insync.replicas``, 3 and 2 on a cluster of at least 3 brokers, else 1 and 1) and
    ``unclean.leader.election.enable=false``. A missing co-partitioned topic gets the partition
    count of the existing co-partitioned ones, so a half-created set can be completed.
    Raises TopicContractError on a contract violation, TopicAdminError on timeouts.
    """
    specs = list(specs or contract_specs(kafka))
    admin = _admin(kafka)
    try:
        metadata = list_topics(admin, timeout)
    except KafkaException as exc:
        raise TopicAdminError(
            f"Kafka at {kafka.bootstrap_servers} did not answer in {timeout:.0f}s: {exc}"
        ) from exc
    wanted = durability(kafka, len(metadata.brokers))
    if wanted.replication_factor > len(metadata.brokers):
        raise TopicContractError(
            [
                f"replication factor {wanted.replication_factor} needs at least that many "
                f"brokers; the cluster at {kafka.bootstrap_servers} lists "
                f"{len(metadata.brokers)}"
            ]
        )
    replication = wanted.replication_factor
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
                    "topic_partitions_follow_existing",
                    extra={
                        "topic": spec.name,
                        "partitions": partitions,
                        "configured": spec.partitions,
                    },
                )
        configs = {
            "min.insync.replicas": str(wanted.min_insync_replicas),
            UNCLEAN: "false",
            **spec.configs,
        }
        new.append(NewTopic(spec.name, partitions, replication, config=configs))
    if new:
        _create(admin, new, timeout)
    states = _verified(
        admin, specs, kafka.topics, timeout, settle=timeout if new else 0.0, wanted=wanted
    )
    log.info(
        "topics_ok",
        extra={"count": len(specs), "replication": replication, "created_count": len(new)},
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
    admin = _admin(kafka)
    wanted = durability(kafka, broker_count(admin, timeout))
    states = _verified(admin, specs, kafka.topics, timeout, settle=0.0, wanted=wanted)
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


def max_message_bytes(
    kafka: KafkaSettings, names: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S
) -> dict[str, int]:
    """Each existing topic's ``max.message.bytes`` (the largest record batch it takes, in bytes;
    the broker's default where the topic sets none), by name; a missing topic is left out.
    Raises TopicAdminError when Kafka does not answer in ``timeout`` seconds."""
    limits: dict[str, int] = {}
    for name, state in read_states(_admin(kafka), list(names), timeout).items():
        raw = state.configs.get("max.message.bytes") if state is not None else None
        if raw is not None and raw.isdigit():
            limits[name] = int(raw)
    return limits


def format_states(states: Mapping[str, TopicState | None]) -> str:
    """A plain-text table of ``states`` for ``prgate topics describe``."""
    header = ("topic", "partitions", "replicas", "isr.min", "under.replicated", *SHOWN_CONFIGS)
    rows: list[tuple[str, ...]] = [header]
    for name, state in states.items():
        if state is None:
            rows.append((name, "MISSING", "", "", "", *("" for _ in SHOWN_CONFIGS)))
        else:
            shown = (state.configs.get(k, "") for k in SHOWN_CONFIGS)
            rows.append(
                (
                    name,
                    str(state.partitions),
                    str(state.replication_factor),
                    str(state.min_in_sync),
                    str(state.under_replicated),
                    *shown,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
