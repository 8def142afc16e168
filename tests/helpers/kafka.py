"""Kafka helpers for tests: free ports, producing, reading a whole topic, headers.

    from helpers.kafka import consume_all, produce, headers_of

Every wait is bounded; ``consume_all`` returns what it read when the timeout passes, so a test
asserts on the result instead of hanging.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterable, Sequence

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings

Headers = Sequence[tuple[str, str | bytes]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reliable_producer(kafka: KafkaSettings, **overrides: object) -> Producer:
    """An idempotent ``acks=all`` producer, as docs/contract.md requires of every producer."""
    return Producer(
        kafka.client_config(
            **{"enable.idempotence": True, "acks": "all", "linger.ms": 5, **overrides}
        )
    )


def produce(
    kafka: KafkaSettings,
    topic: str,
    records: Iterable[tuple[str | bytes | None, bytes, Headers]],
    *,
    timeout: float = 15.0,
) -> list[Message]:
    """Produce ``(key, value, headers)`` records, wait for every ack; return the delivered ones."""
    producer = reliable_producer(kafka)
    delivered: list[Message] = []
    errors: list[str] = []

    def on_delivery(err: object, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(msg)

    count = 0
    for key, value, headers in records:
        producer.produce(
            topic, value=value, key=key, headers=list(headers), on_delivery=on_delivery
        )
        count += 1
    remaining = producer.flush(timeout)
    if remaining or errors:
        raise AssertionError(f"produce to {topic}: {remaining} not acked, errors {errors}")
    assert len(delivered) == count
    return delivered


def consume_all(
    kafka: KafkaSettings,
    topic: str,
    *,
    expected: int | None = None,
    timeout: float = 15.0,
    isolation: str = "read_committed",
) -> list[Message]:
    """Every record of ``topic`` from the beginning, in partition order per partition.

    Reads until each partition's position reaches the high watermark seen at the start (or
    ``expected`` records arrived), or ``timeout`` passes. No consumer group is used (assign).
    """
    consumer = Consumer(
        kafka.client_config(
            **{
                "group.id": f"test-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": isolation,
                "auto.offset.reset": "earliest",
            }
        )
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        if metadata.topics[topic].error is not None:
            raise AssertionError(f"topic {topic}: {metadata.topics[topic].error}")
        partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions
        ]
        ends = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout)[1]
            for tp in partitions
        }
        consumer.assign(partitions)
        records: list[Message] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if expected is not None and len(records) >= expected:
                break
            if expected is None and _caught_up(consumer, topic, ends):
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                raise KafkaException(msg.error())
            records.append(msg)
        return records
    finally:
        consumer.close()


def _caught_up(consumer: Consumer, topic: str, ends: dict[int, int]) -> bool:
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return all(tp.offset >= ends[tp.partition] or ends[tp.partition] == 0 for tp in positions)


def headers_of(msg: Message) -> dict[str, str]:
    """The record's headers as text (last value wins for a repeated key, nulls left out)."""
    return codec.header_texts(msg.headers())
