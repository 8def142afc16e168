"""The topic contract on a real broker: creation, read-back, refusals, a protobuf round trip."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from google.protobuf.timestamp_pb2 import Timestamp
from helpers.ids import new_id
from helpers.kafka import consume_all, free_port, headers_of, produce

from prgate.kafka import codec
from prgate.kafka.contract import DAY_MS, Topics
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topic_checks import TopicContractError
from prgate.kafka.topics import (
    TopicAdminError,
    check_topics,
    contract_specs,
    describe_topics,
    ensure_topics,
    format_states,
)
from prgate.v1 import commands_pb2

pytestmark = pytest.mark.kafka


def admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(kafka.client_config())


def read_back(kafka: KafkaSettings, name: str) -> tuple[int, dict[str, str]]:
    """Partition count and configs of ``name``, read independently of prgate.kafka.topics."""
    client = admin(kafka)
    partitions = len(client.list_topics(name, timeout=10).topics[name].partitions)
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = client.describe_configs([resource], request_timeout=10)[resource].result(timeout=10)
    return partitions, {key: entry.value for key, entry in entries.items()}


def create_raw(kafka: KafkaSettings, name: str, partitions: int, **configs: str) -> None:
    client = admin(kafka)  # must outlive the futures
    futures = client.create_topics(
        # -1: the broker's default.replication.factor (1 on one broker, 3 on the cluster).
        [NewTopic(name, partitions, -1, config=configs)],
        operation_timeout=10,
        request_timeout=10,
    )
    futures[name].result(timeout=15)
    # The creation's answer can come before the broker's metadata shows the topic; the tests
    # that follow ask for metadata at once, so wait until it is there with all its partitions.
    deadline = time.monotonic() + 15
    while True:
        topic = client.list_topics(name, timeout=10).topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) == partitions:
            return
        assert time.monotonic() < deadline, f"topic {name} not in the metadata after 15 s"
        time.sleep(0.05)


def test_ensure_creates_the_six_topics_with_contract_configs(
    kafka_settings: KafkaSettings,
) -> None:
    ensure_topics(kafka_settings)
    topics = kafka_settings.topics

    expected = {
        topics.commands: (3, "delete", str(DAY_MS)),
        topics.events: (3, "delete", str(7 * DAY_MS)),
        topics.pull_requests: (3, "compact", None),
        topics.results: (3, "delete", str(DAY_MS)),
        topics.dlq: (1, "delete", str(7 * DAY_MS)),
        topics.refusals: (3, "delete", str(7 * DAY_MS)),
    }
    for name, (partitions, policy, retention) in expected.items():
        actual_partitions, configs = read_back(kafka_settings, name)
        assert actual_partitions == partitions, name
        assert configs["cleanup.policy"] == policy, name
        if retention is not None:
            assert configs["retention.ms"] == retention, name
    assert read_back(kafka_settings, topics.pull_requests)[1]["min.compaction.lag.ms"] == "0"


def test_ensure_is_idempotent_and_check_accepts_the_result(kafka_settings: KafkaSettings) -> None:
    first = ensure_topics(kafka_settings)
    second = ensure_topics(kafka_settings)
    checked = check_topics(kafka_settings)

    assert [s.name for s in first] == [s.name for s in second] == [s.name for s in checked]
    assert [s.partitions for s in checked] == [3, 3, 3, 3, 1, 3]
    assert all(s.replication_factor == 1 for s in checked)


def test_events_retention_is_configurable(kafka_settings: KafkaSettings) -> None:
    specs = contract_specs(kafka_settings, events_retention_ms=3 * DAY_MS)
    ensure_topics(kafka_settings, specs=specs)

    assert read_back(kafka_settings, kafka_settings.topics.events)[1]["retention.ms"] == str(
        3 * DAY_MS
    )


def test_wrong_cleanup_policy_on_existing_topic_is_refused(kafka_settings: KafkaSettings) -> None:
    name = kafka_settings.topics.pull_requests
    create_raw(kafka_settings, name, 3, **{"cleanup.policy": "delete"})

    with pytest.raises(TopicContractError) as refused:
        ensure_topics(kafka_settings)

    message = str(refused.value)
    assert f"topic {name} has cleanup.policy=delete, expected cleanup.policy=compact" in message
    with pytest.raises(TopicContractError, match=re.escape("cleanup.policy=delete")):
        check_topics(kafka_settings)
    # The refused topic was left as it was.
    assert read_back(kafka_settings, name)[1]["cleanup.policy"] == "delete"


def test_compact_results_topic_is_refused_but_compact_delete_accepted(
    kafka_settings: KafkaSettings,
) -> None:
    create_raw(kafka_settings, kafka_settings.topics.results, 3, **{"cleanup.policy": "compact"})
    with pytest.raises(
        TopicContractError, match=re.escape("expected cleanup.policy=compact,delete or delete")
    ):
        ensure_topics(kafka_settings)

    other = KafkaSettings(
        kafka_settings.bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:12]}.", partitions=3
    )
    create_raw(other, other.topics.results, 3, **{"cleanup.policy": "compact,delete"})
    assert len(ensure_topics(other)) == 6


def test_partition_mismatch_between_co_partitioned_topics_is_refused(
    kafka_settings: KafkaSettings,
) -> None:
    topics = kafka_settings.topics
    create_raw(kafka_settings, topics.commands, 3, **{"cleanup.policy": "delete"})
    create_raw(kafka_settings, topics.pull_requests, 2, **{"cleanup.policy": "compact"})

    with pytest.raises(TopicContractError) as refused:
        ensure_topics(kafka_settings)

    message = str(refused.value)
    assert "co-partitioned topics have different partition counts" in message
    assert f"{topics.commands}=3" in message
    assert f"{topics.pull_requests}=2" in message


def test_missing_co_partitioned_topics_follow_the_existing_partition_count(
    kafka_settings: KafkaSettings,
) -> None:
    topics = kafka_settings.topics
    create_raw(kafka_settings, topics.pull_requests, 2, **{"cleanup.policy": "compact"})

    ensure_topics(kafka_settings)

    assert read_back(kafka_settings, topics.commands)[0] == 2
    assert read_back(kafka_settings, topics.events)[0] == 2
    assert read_back(kafka_settings, topics.results)[0] == 3  # not co-partitioned


def test_check_reports_missing_topics_and_creates_nothing(kafka_settings: KafkaSettings) -> None:
    with pytest.raises(TopicContractError) as refused:
        check_topics(kafka_settings)

    assert f"topic {kafka_settings.topics.commands} is missing" in str(refused.value)
    assert len(refused.value.problems) == 6
    assert all(state is None for state in describe_topics(kafka_settings).values())


def test_describe_shows_names_partitions_and_configs(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    states = describe_topics(kafka_settings)

    assert list(states) == [
        ensured_topics.commands,
        ensured_topics.events,
        ensured_topics.pull_requests,
        ensured_topics.results,
        ensured_topics.dlq,
        ensured_topics.refusals,
    ]
    pull_requests = states[ensured_topics.pull_requests]
    assert pull_requests is not None
    assert pull_requests.partitions == 3
    assert pull_requests.configs["cleanup.policy"] == "compact"
    table = format_states(states)
    assert ensured_topics.pull_requests in table
    assert "cleanup.policy" in table and "compact" in table and "86400000" in table


def test_unreachable_broker_fails_within_the_timeout() -> None:
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", topic_prefix="x.")
    with pytest.raises(TopicAdminError, match="did not answer"):
        ensure_topics(kafka, timeout=2.0)


def test_command_envelope_round_trips_with_the_fixed_headers(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    issued_at = Timestamp()
    issued_at.FromSeconds(1_700_000_000)
    envelope = commands_pb2.CommandEnvelope(
        command_id=new_id("pr-42"),
        pull_request_id="pr-42",
        issued_at=issued_at,
        caller="alice",
        idempotency_key="key-1",
        change_pull_request_title=commands_pb2.ChangePullRequestTitle(
            pull_request_id="pr-42", title="Better title", changed_by="alice"
        ),
    )
    sent = codec.command_record(ensured_topics.commands, envelope, reply_to=ensured_topics.results)

    [delivered] = produce(kafka_settings, sent.topic, [(sent.key, sent.value or b"", sent.headers)])
    [record] = consume_all(kafka_settings, ensured_topics.commands, expected=1)

    decoded = codec.decode_command(record.key(), record.value(), record.headers())
    assert decoded == envelope
    assert decoded.WhichOneof("command") == "change_pull_request_title"
    assert record.key() == b"pr-42"
    assert record.partition() == delivered.partition()
    assert headers_of(record) == {
        "correlation-id": envelope.command_id,
        "reply-to": ensured_topics.results,
        "message-type": "prgate.v1.CommandEnvelope",
    }
