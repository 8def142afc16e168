"""Fixtures shared by every test suite.

Kafka: ``kafka_bootstrap`` is the cluster of the whole session. With ``KAFKA_BOOTSTRAP_SERVERS``
set it is that cluster; otherwise the project's own broker (prgate.kafka.local) is started on
free ports with a temporary data directory and stopped at the end; with
``PRGATE_TEST_BROKERS=3`` it is the project's three-node cluster (prgate.kafka.cluster) instead,
which is also ``session_cluster`` (the cluster fault tests kill and restart its nodes). If it
cannot start, every test that needs it fails with the reason (it never skips). Each test gets its
own topic prefix, so tests share the broker without sharing topics.

Tests that use ``kafka_bootstrap`` (directly or through another fixture) are marked ``kafka``
automatically: ``pytest -m 'not kafka'`` runs only what needs no broker.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # makes `helpers` importable from any test

from helpers.kafka import free_port

from prgate.kafka.cluster import LocalCluster
from prgate.kafka.contract import Topics
from prgate.kafka.local import LocalKafka
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics

log = logging.getLogger("tests.kafka")

# `prgate pr` keeps consistency tokens in a file under the home directory by default; a test
# that runs the CLI must not write there (an empty value keeps them in memory only). Tests that
# check the file set their own.
os.environ.setdefault("PRGATE_CONSISTENCY_FILE", "")

TEST_PARTITIONS = 3
# The switch that runs the suite on the local three-node cluster instead of one broker.
TEST_BROKERS = int(os.environ.get("PRGATE_TEST_BROKERS") or "1")
if TEST_BROKERS not in (1, 3):
    raise pytest.UsageError(f"PRGATE_TEST_BROKERS={TEST_BROKERS}: use 1 or 3")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "kafka_bootstrap" in names:
            item.add_marker(pytest.mark.kafka)
        if "session_cluster" in names:
            item.add_marker(pytest.mark.cluster)


def start_local_kafka(base: Path) -> LocalKafka:
    """A started project broker on free ports with its state under ``base``."""
    broker = LocalKafka(free_port(), controller_port=free_port(), state_dir=base)
    broker.start(timeout=180.0)
    return broker


def start_local_cluster(base: Path, nodes: int = 3) -> LocalCluster:
    """A started three-node project cluster on free ports with its state under ``base``."""
    cluster = LocalCluster.on_ports(
        [free_port() for _ in range(nodes)], [free_port() for _ in range(nodes)], state_dir=base
    )
    cluster.start(timeout=240.0)
    return cluster


@pytest.fixture(scope="session")
def session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The project's three-node cluster, started once per session when a test asks for it
    (with ``PRGATE_TEST_BROKERS=3`` it is also ``kafka_bootstrap``); stopped at the end."""
    cluster = start_local_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Bootstrap servers of the session's cluster (KAFKA_BOOTSTRAP_SERVERS, the three-node
    cluster with PRGATE_TEST_BROKERS=3, or our own broker)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        log.info("test_kafka_external", extra={"bootstrap": external})
        yield external
        return
    if TEST_BROKERS == 3:
        cluster: LocalCluster = request.getfixturevalue("session_cluster")
        log.info("test_kafka_cluster", extra={"bootstrap": cluster.bootstrap_servers})
        yield cluster.bootstrap_servers
        return
    broker = start_local_kafka(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture
def local_kafka_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], LocalKafka]]:
    """Start private brokers (for tests that stop/restart Kafka); all stopped at teardown.

    Always the project's own single broker, also when KAFKA_BOOTSTRAP_SERVERS is set or with
    PRGATE_TEST_BROKERS=3: a test must not stop a shared cluster, and taking a whole private
    three-node cluster away and back costs minutes on two cores for the same fault (Kafka
    gone); on the cluster that fault is two of three brokers gone
    (tests/faults/test_cluster_faults.py). ``broker.restart()`` keeps the data.
    """
    started: list[LocalKafka] = []

    def factory() -> LocalKafka:
        broker = start_local_kafka(tmp_path_factory.mktemp("kafka-private"))
        started.append(broker)
        return broker

    yield factory
    for broker in started:
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix of this test alone, e.g. ``t3f9c2a1b7d4e.``."""
    return f"t{uuid.uuid4().hex[:12]}."


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, topic_prefix: str) -> KafkaSettings:
    """KafkaSettings for the session's cluster, this test's prefix and 3 partitions."""
    return KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=TEST_PARTITIONS
    )


@pytest.fixture
def ensured_topics(kafka_settings: KafkaSettings) -> Topics:
    """The six contract topics of this test, created; returns their names."""
    ensure_topics(kafka_settings)
    return kafka_settings.topics
