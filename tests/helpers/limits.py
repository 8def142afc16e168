"""Topic size limits for tests of records Kafka would refuse."""

from __future__ import annotations

import time
import zlib

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import max_message_bytes


def set_max_message_bytes(kafka: KafkaSettings, topic: str, limit: int) -> None:
    """Set ``topic``'s ``max.message.bytes`` and wait (bounded) until the broker applies it."""
    entry = ConfigEntry(
        "max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET
    )
    admin = AdminClient(kafka.client_config())
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=15)
    deadline = time.monotonic() + 15
    while max_message_bytes(kafka, [topic], timeout=5).get(topic) != limit:
        assert time.monotonic() < deadline, f"{topic}: max.message.bytes={limit} not applied"
        time.sleep(0.2)
    time.sleep(0.5)  # describe answers from the controller; the partition leader follows


def partition_of(key: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner (CRC-32 of the key) gives ``key``."""
    return zlib.crc32(key.encode()) % partitions
