"""Kafka connection settings shared by every process, and the client configs built from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prgate.settings import setting
from processor.contract import Topics

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


@dataclass(frozen=True)
class KafkaSettings:
    """Where Kafka is and how the project's topics are named."""

    bootstrap_servers: str = setting(
        DEFAULT_BOOTSTRAP, "KAFKA_BOOTSTRAP_SERVERS", "Kafka bootstrap servers"
    )
    topic_prefix: str = setting("prgate.", "PRGATE_TOPIC_PREFIX", "prefix of every topic name")
    partitions: int = setting(
        6, "PRGATE_PARTITIONS", "partitions of the commands, events and pull-requests topics"
    )
    kafka_properties: dict[str, str] = setting(
        {},
        "PRGATE_KAFKA_PROPERTIES",
        "extra librdkafka client properties (k=v,k=v), e.g. security.protocol, sasl.*",
        secret=False,
    )

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A confluent-kafka config: bootstrap, passthrough properties, then ``overrides``.

        TCP_NODELAY by default, as the Java clients always do: librdkafka pipelines small
        requests (a transaction's AddPartitions, AddOffsets, produce) on one connection,
        where Nagle's algorithm can hold one back until the previous one is acknowledged.
        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "socket.nagle.disable": True,
        }
        config.update(self.kafka_properties)
        config.update(overrides)
        return config
