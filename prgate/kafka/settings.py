"""Kafka connection settings shared by every process, and the client configs built from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import javaproperties

from prgate.kafka.contract import Topics
from prgate.observability.kafka_statistics import KAFKA_STATISTICS, STATISTICS_INTERVAL_MS
from prgate.observability.logs import KAFKA_CLIENT_LOG
from prgate.settings import SettingsError, setting

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
    replication_factor: int = setting(
        0,
        "PRGATE_REPLICATION_FACTOR",
        "replicas of each contract topic (0: 3 when the cluster has at least 3 brokers, else 1); "
        "existing topics with fewer are refused",
    )
    min_insync_replicas: int = setting(
        0,
        "PRGATE_MIN_INSYNC_REPLICAS",
        "min.insync.replicas of each contract topic (0: 2 when the replication factor is at "
        "least 3, else 1); existing topics with less are refused",
    )
    kafka_properties: dict[str, str] = setting(
        {},
        "PRGATE_KAFKA_PROPERTIES",
        "extra librdkafka client properties (k=v,k=v or one per line; a piece without = "
        "continues the value: debug=eos,broker; \\, is a literal comma), e.g. "
        "security.protocol, sasl.*; win over --kafka-properties-file",
        secret=False,
    )
    kafka_properties_file: str = setting(
        "",
        "PRGATE_KAFKA_PROPERTIES_FILE",
        "a Java .properties file of librdkafka client properties (as Kafka's tools take "
        "with --command-config); read at start",
    )

    def __post_init__(self) -> None:
        """Fold the properties file under the inline properties (those win).

        Raises :class:`~prgate.settings.SettingsError` naming the file when it cannot be read
        or parsed, or when a property sets ``bootstrap.servers``: it would silently win over
        ``KAFKA_BOOTSTRAP_SERVERS``, which the logs and every check name instead.
        """
        if self.kafka_properties_file:
            self._fold_properties_file()
        if "bootstrap.servers" in self.kafka_properties:
            raise SettingsError(
                "invalid setting --kafka-properties / PRGATE_KAFKA_PROPERTIES (or its file):"
                " bootstrap.servers conflicts with --bootstrap-servers / KAFKA_BOOTSTRAP_SERVERS;"
                " set the brokers there"
            )

    def _fold_properties_file(self) -> None:
        try:
            text = Path(self.kafka_properties_file).read_text(encoding="utf-8")
            from_file: dict[str, str] = javaproperties.loads(text)
        except (OSError, ValueError) as exc:
            raise SettingsError(
                f"cannot read --kafka-properties-file {self.kafka_properties_file}: {exc}"
            ) from exc
        object.__setattr__(self, "kafka_properties", {**from_file, **self.kafka_properties})

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A confluent-kafka config: bootstrap, passthrough properties, then ``overrides``.

        TCP_NODELAY by default, as the Java clients always do: librdkafka pipelines small
        requests (a transaction's AddPartitions, AddOffsets, produce) on one connection,
        where Nagle's algorithm can hold one back until the previous one is acknowledged.

        librdkafka's log lines go through Python logging (``logger``:
        :data:`prgate.observability.logs.KAFKA_CLIENT_LOG`), as JSON fields with repeats
        bounded; they are delivered from the client's ``poll()``/``flush()``/``consume()``, as
        are librdkafka's statistics (every ``STATISTICS_INTERVAL_MS``, kept by
        :data:`prgate.observability.kafka_statistics.KAFKA_STATISTICS` for ``/metrics``).
        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "socket.nagle.disable": True,
            "logger": KAFKA_CLIENT_LOG,
            "statistics.interval.ms": STATISTICS_INTERVAL_MS,
            "stats_cb": KAFKA_STATISTICS.record,
        }
        config.update(self.kafka_properties)
        config.update(overrides)
        return config
