"""Fixtures shared by every test suite.

Kafka: ``kafka_bootstrap`` is the cluster of the whole session. With ``KAFKA_BOOTSTRAP_SERVERS``
set it is that cluster; otherwise the project's own broker (prgate.local_kafka) is started on
free ports with a temporary data directory and stopped at the end. If it cannot start, every
test that needs it fails with the reason (it never skips). Each test gets its own topic prefix,
so tests share the broker without sharing topics.

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

from prgate.kafka_settings import KafkaSettings
from prgate.local_kafka import LocalKafka
from processor.contract import Topics
from processor.topics import ensure_topics

log = logging.getLogger("tests.kafka")

TEST_PARTITIONS = 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


def start_local_kafka(base: Path) -> LocalKafka:
    """A started project broker on free ports with its state under ``base``."""
    broker = LocalKafka(free_port(), controller_port=free_port(), state_dir=base)
    broker.start(timeout=180.0)
    return broker


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of the session's cluster (KAFKA_BOOTSTRAP_SERVERS or our own)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        log.info("event=test_kafka_external bootstrap=%s", external)
        yield external
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

    Always the project's own broker, also when KAFKA_BOOTSTRAP_SERVERS is set: a test must not
    stop a shared cluster. ``broker.restart()`` keeps the data.
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
    """The five contract topics of this test, created; returns their names."""
    ensure_topics(kafka_settings)
    return kafka_settings.topics
