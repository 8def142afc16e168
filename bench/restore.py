"""Restore: how fast the gateway's read model and a processor rebuild N pull requests.

The compacted topic (of its own topic prefix) is filled quickly by a plain idempotent producer
with valid PullRequest snapshots of realistic size (the sample life's merged snapshot under N
distinct ids), then both restore paths run on it, with the code and configs the services use:
:func:`processor.restore.restore_partitions` over the processor's ``restore_config`` for all
partitions (one processor owning everything), and :class:`gateway.read_model.ReadModel` until
``caught_up``. Both run in the benchmark's process while nothing else is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from bench import payloads
from gateway.read_model import ReadModel
from prgate.kafka_settings import KafkaSettings
from prgate.v1.pull_request_pb2 import PullRequest
from processor.contract import HEADER_MESSAGE_TYPE, TYPE_PULL_REQUEST
from processor.restore import restore_partitions
from processor.settings import ProcessorSettings
from processor.topics import ensure_topics

log = logging.getLogger("bench.restore")


def _template() -> bytes:
    """The merged sample snapshot without its id (field 1 is prepended per record)."""
    snapshot = PullRequest.FromString(payloads.snapshot_for("x"))
    snapshot.ClearField("pull_request_id")
    return snapshot.SerializeToString()


def fill(kafka: KafkaSettings, count: int, timeout_s: float = 600.0) -> dict[str, Any]:
    """Write ``count`` snapshots to the pull-requests topic; returns ids and the fill rate."""
    ensure_topics(kafka)
    topic = kafka.topics.pull_requests
    producer = Producer(
        kafka.client_config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 500_000,
            }
        )
    )
    rest = _template()
    headers: list[tuple[str, str | bytes | None]] = [
        (HEADER_MESSAGE_TYPE, TYPE_PULL_REQUEST.encode())
    ]
    started = time.perf_counter()
    for _ in range(count):
        key = f"pr-{uuid.uuid4().hex}".encode()
        # Field 1 (pull_request_id), length-delimited, then the rest: a valid PullRequest.
        value = b"\x0a" + bytes([len(key)]) + key + rest
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    seconds = time.perf_counter() - started
    if remaining:
        raise RuntimeError(f"restore fill: {remaining} snapshots not delivered")
    return {"count": count, "fill_seconds": round(seconds, 3), "fill_rate": round(count / seconds)}


def restore_processor(kafka: KafkaSettings, expected: int, timeout_s: float) -> dict[str, Any]:
    """A processor's restore of every partition, as on assignment."""
    settings = ProcessorSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        topic_prefix=kafka.topic_prefix,
        partitions=kafka.partitions,
    )
    consumer = Consumer(settings.restore_config())
    try:
        consumer.list_topics(kafka.topics.pull_requests, 10.0)  # connect, as run() does first
        started = time.perf_counter()
        states = restore_partitions(
            consumer, kafka.topics.pull_requests, range(kafka.partitions), timeout_s
        )
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    restored = sum(len(s) for s in states.values())
    return _rates("processor", restored, expected, seconds)


def bare_consumer(kafka: KafkaSettings, expected: int, timeout_s: float) -> dict[str, Any]:
    """The baseline: the same consumer config reading every record to the end, no decoding."""
    settings = ProcessorSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        topic_prefix=kafka.topic_prefix,
        partitions=kafka.partitions,
    )
    consumer = Consumer(settings.restore_config())
    topic = kafka.topics.pull_requests
    records = 0
    try:
        consumer.list_topics(topic, 10.0)
        started = time.perf_counter()
        deadline = started + timeout_s
        pending = set(range(kafka.partitions))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        while pending and time.perf_counter() < deadline:
            for msg in consumer.consume(1000, 0.2):
                error = msg.error()
                if error is None:
                    records += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    return _rates("bare_consumer", records, expected, seconds)


async def restore_read_model(
    kafka: KafkaSettings, expected: int, timeout_s: float
) -> dict[str, Any]:
    """The gateway read model's catch-up from the beginning of the compacted topic."""
    model = ReadModel(kafka)
    started = time.perf_counter()
    await model.start()
    try:
        caught_up = await model.wait_caught_up(timeout_s)
        seconds = time.perf_counter() - started
        restored = model.stats()["entities"]
    finally:
        await model.close()
    record = _rates("gateway_read_model", restored, expected, seconds)
    record["caught_up"] = caught_up
    return record


def _rates(who: str, restored: int, expected: int, seconds: float) -> dict[str, Any]:
    return {
        "who": who,
        "restored": restored,
        "expected": expected,
        "seconds": round(seconds, 3),
        "per_second": round(restored / seconds) if seconds > 0 else None,
    }


def measure(kafka: KafkaSettings, count: int, timeout_s: float = 900.0) -> dict[str, Any]:
    """Fill, then restore with both paths; returns the JSON record."""
    filled = fill(kafka, count)
    log.info("event=restore_filled %s", filled)
    bare = bare_consumer(kafka, count, timeout_s)
    processor = restore_processor(kafka, count, timeout_s)
    log.info("event=restore_processor %s", processor)
    read_model = asyncio.run(restore_read_model(kafka, count, timeout_s))
    log.info("event=restore_read_model %s", read_model)
    return {
        "n": count,
        **filled,
        "bare_consumer": bare,
        "processor": processor,
        "gateway_read_model": read_model,
    }
