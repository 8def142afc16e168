"""The project's three-node cluster (prgate.kafka.cluster): topics get 3 replicas and
``min.insync.replicas=2``, weaker existing topics are refused, and the cluster names who leads
and coordinates what the same way Kafka's own tools do. ``prgate kafka start --brokers 3`` /
``status`` / ``stop`` and ``prgate topics describe`` end to end on a cluster of their own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from prgate.kafka.cluster import OFFSETS_TOPIC, LocalCluster, coordinator_partition
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topic_checks import TopicContractError
from prgate.kafka.topics import describe_topics, ensure_topics


def settings(cluster: LocalCluster) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=cluster.bootstrap_servers,
        topic_prefix=f"c{uuid.uuid4().hex[:10]}.",
        partitions=3,
    )


def test_topics_on_the_cluster_have_three_in_sync_replicas_and_min_isr_2(
    session_cluster: LocalCluster,
) -> None:
    kafka = settings(session_cluster)
    ensure_topics(kafka)
    states = describe_topics(kafka)
    for name, state in states.items():
        assert state is not None, name
        assert state.replication_factor == 3, (name, state)
        assert state.min_in_sync == 3 and state.under_replicated == 0, (name, state)
        assert state.configs["min.insync.replicas"] == "2", (name, state.configs)
        assert state.configs["unclean.leader.election.enable"] == "false", name


def create(cluster: LocalCluster, name: str, replicas: int, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    futures = admin.create_topics([NewTopic(name, 3, replicas, config=configs)])
    futures[name].result(timeout=30)


def test_weaker_existing_topics_are_refused(session_cluster: LocalCluster) -> None:
    kafka = settings(session_cluster)
    topics = kafka.topics
    create(session_cluster, topics.commands, 1, **{"cleanup.policy": "delete"})
    create(session_cluster, topics.events, 3, **{"min.insync.replicas": "1"})
    create(
        session_cluster,
        topics.pull_requests,
        3,
        **{"cleanup.policy": "compact", "unclean.leader.election.enable": "true"},
    )
    with pytest.raises(TopicContractError) as refused:
        ensure_topics(kafka)
    problems = "\n".join(refused.value.problems)
    assert f"topic {topics.commands} has replication factor 1, expected at least 3" in problems
    assert f"topic {topics.events} has min.insync.replicas=1, expected at least 2" in problems
    assert f"topic {topics.pull_requests} has unclean.leader.election.enable=true" in problems


def test_leaders_and_coordinators_are_those_kafka_names(session_cluster: LocalCluster) -> None:
    transactional_id = f"c{uuid.uuid4().hex[:10]}.processor-p0"
    producer = Producer(
        {
            "bootstrap.servers": session_cluster.bootstrap_servers,
            "transactional.id": transactional_id,
        }
    )
    producer.init_transactions(30)
    ours = session_cluster.transaction_coordinator(transactional_id)
    assert ours in (1, 2, 3)
    assert session_cluster.described_transaction_coordinator(transactional_id) == ours

    group = f"c{uuid.uuid4().hex[:10]}.group"
    topic = f"c{uuid.uuid4().hex[:10]}.topic"
    create(session_cluster, topic, 3)
    consumer = Consumer({"bootstrap.servers": session_cluster.bootstrap_servers, "group.id": group})
    try:
        consumer.subscribe([topic])
        consumer.poll(5)
        coordinator = session_cluster.group_coordinator(group)
        partition = coordinator_partition(group, 5)  # offsets.topic.num.partitions=5
        assert coordinator == session_cluster.leader(OFFSETS_TOPIC, partition)
    finally:
        consumer.close()
    assert session_cluster.active_controller() in (1, 2, 3)
    assert session_cluster.under_replicated() == []


def free_run(count: int) -> int:
    """A port P such that P .. P+count-1 are all free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        ports_free = True
        for port in range(base, base + count):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    ports_free = False
                    break
        if ports_free:
            return base
    raise AssertionError("no run of free ports found")


def prgate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prgate.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.mark.kafka
@pytest.mark.cluster
def test_cli_starts_describes_and_stops_a_three_node_cluster(tmp_path: Path) -> None:
    port = free_run(6)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PRGATE_"))}
    env |= {"PRGATE_KAFKA_STATE_DIR": str(tmp_path / "cluster"), "PRGATE_KAFKA_PORT": str(port)}
    started = prgate("kafka", "start", "--brokers", "3", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        bootstrap = ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(3))
        assert f"3 nodes serve at {bootstrap}" in started.stdout
        env_topics = env | {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PRGATE_TOPIC_PREFIX": "cli."}
        ensured = prgate("topics", "ensure", env=env_topics)
        assert ensured.returncode == 0, ensured.stdout + ensured.stderr
        described = prgate("topics", "describe", env=env_topics)
        assert described.returncode == 0, described.stderr
        header, *rows = described.stdout.splitlines()
        assert header.split()[:5] == [
            "topic",
            "partitions",
            "replicas",
            "isr.min",
            "under.replicated",
        ]
        assert len(rows) == 6 and all(row.split()[2:5] == ["3", "3", "0"] for row in rows), rows
        status = prgate("kafka", "status", env=env | {"PRGATE_TOPIC_PREFIX": "cli."})
        assert status.returncode == 0, status.stdout + status.stderr
        for node in (1, 2, 3):
            assert (
                f"node {node} serving: bootstrap=127.0.0.1:{port + 2 * (node - 1)}" in status.stdout
            )
        assert "active controller: node " in status.stdout
        assert "leaders cli.commands: 0=" in status.stdout
        assert "under-replicated partitions: 0" in status.stdout
    finally:
        stopped = prgate("kafka", "stop", env=env)
    assert stopped.returncode == 0 and "stopped the local cluster" in stopped.stdout, stopped
    status = prgate("kafka", "status", env=env | {"PRGATE_KAFKA_BROKERS": "3"})
    assert status.returncode == 1 and status.stdout.count(" down: ") == 3, status.stdout
