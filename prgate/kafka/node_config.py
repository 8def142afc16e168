"""What a local Kafka node runs: its ``server.properties`` and its JVM command lines.

Pure rendering for :class:`prgate.kafka.local.LocalKafka` (which writes the file and runs the
commands): the KRaft broker+controller properties of one node on loopback (:data:`HOST`), the
``kafka.tools.StorageTool format`` command that formats its data directory once, and the
``kafka.Kafka`` command that runs it. No I/O here.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

HOST = "127.0.0.1"


def random_cluster_id() -> str:
    """A Kafka-style Uuid: 16 random bytes, URL-safe base64 without padding, no leading '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def server_properties(
    *,
    node_id: int,
    quorum_voters: str,
    port: int,
    controller_port: int,
    data_dir: Path,
    replication: int,
    extra: dict[str, str],
    host: str = HOST,
) -> dict[str, str]:
    """The ``server.properties`` of one KRaft broker+controller node, in file order.

    ``quorum_voters``: ``id@host:port,...``; ``replication``: replicas of the internal topics
    and the default topic replication factor, with ``min.insync.replicas`` =
    min(2, replication); ``host``: the address both listeners bind and advertise (loopback by
    default; a test host's own address in a network namespace); ``extra`` overrides any of them.
    """
    min_isr = min(2, replication)
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": quorum_voters,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        # Internal topics have one replica per node up to 3 (min ISR 2 on a cluster), and
        # few partitions start faster.
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        # A crashed replica must never become leader and lose acknowledged records.
        "unclean.leader.election.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        # The project creates its topics with their configs; a typo must not create one.
        "auto.create.topics.enable": "false",
        "num.network.threads": "3",
        "num.io.threads": "4",
        **extra,
    }


def storage_format_command(
    java: str, libs: Path, cluster_id: str, properties_file: Path
) -> list[str]:
    """``kafka.tools.StorageTool format`` of the node configured by ``properties_file`` with
    ``cluster_id``; ``libs``: the directory of the Kafka jars."""
    return [
        java,
        "-Xmx256m",
        "-cp",
        f"{libs}/*",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(properties_file),
    ]


def broker_command(
    java: str,
    libs: Path,
    *,
    heap: str,
    state_dir: Path,
    log4j_file: Path,
    properties_file: Path,
) -> list[str]:
    """The ``kafka.Kafka`` JVM of one node: ``heap`` its maximum (``-Xmx``, e.g. ``512m``),
    G1 with 20 ms pause target, logging configured by ``log4j_file`` into ``state_dir``."""
    return [
        java,
        f"-Xmx{heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_file}",
        f"-Dkafka.logs.dir={state_dir}",
        "-cp",
        f"{libs}/*",
        "kafka.Kafka",
        str(properties_file),
    ]
