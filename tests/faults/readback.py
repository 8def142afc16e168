"""Reading a prefix's topics back for the fault tests: every committed record
(``read_committed``), bounded in time, so a check never runs on a partial read."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from prgate.kafka import codec
from prgate.kafka.contract import HEADER_CORRELATION_ID
from prgate.kafka.settings import KafkaSettings
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult


def _reader(kafka: KafkaSettings) -> Consumer:
    return Consumer(
        kafka.client_config(
            **{
                "group.id": f"faults-verify-{uuid.uuid4().hex}",  # assign only, never joins
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 50,
            }
        )
    )


def read_topic(
    kafka: KafkaSettings,
    topic: str,
    *,
    timeout: float = 30.0,
    until: Callable[[list[Message]], bool] | None = None,
) -> list[Message]:
    """Every committed record of ``topic``, in offset order per partition.

    Reads until every partition reported EOF (with read_committed: the last stable offset)
    and ``until(records)`` holds, then returns. Fails the test when that does not happen
    within ``timeout`` seconds, so a caller never asserts on a partial read.
    """
    consumer = _reader(kafka)
    try:
        metadata = consumer.list_topics(topic, timeout=min(timeout, 10.0))
        topic_md = metadata.topics.get(topic)
        if topic_md is None or topic_md.error is not None:
            raise AssertionError(f"topic {topic}: {topic_md.error if topic_md else 'missing'}")
        partitions = sorted(topic_md.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        records: list[Message] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                err = msg.error()
                if err is None:
                    records.append(msg)
                    at_end.discard(msg.partition() or 0)
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                else:
                    raise AssertionError(f"reading {topic}: {err}")
            if len(at_end) == len(partitions) and (until is None or until(records)):
                return records
        raise AssertionError(
            f"reading {topic}: not complete within {timeout:.0f}s "
            f"({len(records)} records, partitions at end {sorted(at_end)} of {partitions})"
        )
    finally:
        consumer.close()


def high_watermarks(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> int:
    """Sum of the high watermarks of ``topic``: grows by one for every record produced."""
    consumer = _reader(kafka)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        total = 0
        for partition in metadata.topics[topic].partitions:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout, cached=False
            )
            total += high
        return total
    finally:
        consumer.close()


def results_of(messages: Iterable[Message]) -> list[CommandResult]:
    """The results in ``messages``; a record that is no CommandResult fails the test."""
    return [codec.decode_result(m.value(), m.headers()) for m in messages if m.value() is not None]


def wait_for_results(
    kafka: KafkaSettings, command_ids: set[str], timeout: float = 60.0
) -> list[CommandResult]:
    """All results on the results topic, once every id of ``command_ids`` has one.

    Fails (with the missing ids) when they are not all there within ``timeout`` seconds.
    """

    def complete(records: list[Message]) -> bool:
        seen = {r.command_id for r in results_of(records)}
        return command_ids <= seen

    try:
        return results_of(read_topic(kafka, kafka.topics.results, timeout=timeout, until=complete))
    except AssertionError:
        seen = {r.command_id for r in results_of(read_topic(kafka, kafka.topics.results))}
        missing = sorted(command_ids - seen)
        raise AssertionError(
            f"{len(missing)} accepted commands have no result after {timeout:.0f}s: {missing[:10]}"
        ) from None


def command_records(kafka: KafkaSettings) -> Counter[str]:
    """How many records of each command id the commands topic holds (committed, all of them).

    The id is the CommandEnvelope's ``command_id`` (what the processor deduplicates on); a
    record that does not decode as a command counts under its ``correlation-id`` header, if it
    has one, else not at all. More records than the client's sends mean a producer wrote the
    command again (the gateway's idempotent producer can, see README "Guarantees").
    """
    counts: Counter[str] = Counter()
    for m in read_topic(kafka, kafka.topics.commands):
        try:
            counts[codec.decode_command(m.key(), m.value(), m.headers()).command_id] += 1
        except codec.UndecodableCommand:
            header = dict(m.headers() or []).get(HEADER_CORRELATION_ID)
            if header:
                counts[header.decode(errors="replace")] += 1
    return counts


def read_events(kafka: KafkaSettings) -> list[EventEnvelope]:
    """Every committed event of the prefix, in offset order per partition."""
    return [
        codec.decode_event(m.value(), m.headers())
        for m in read_topic(kafka, kafka.topics.events)
        if m.value() is not None
    ]


def read_snapshots(kafka: KafkaSettings, ignore_keys: frozenset[str]) -> dict[str, PullRequest]:
    """The last snapshot of each pull request (a tombstone removes it), skipping the keys
    of ``ignore_keys``."""
    snapshots: dict[str, PullRequest] = {}
    for m in read_topic(kafka, kafka.topics.pull_requests):
        key = codec.key_text(m.key())
        if key in ignore_keys:
            continue
        snapshot = codec.decode_snapshot(m.key(), m.value(), m.headers())
        if snapshot is None:
            snapshots.pop(key, None)
        else:
            snapshots[key] = snapshot
    return snapshots


class OffsetProbe:
    """Counts the records of one topic (sum of high watermarks), reusing one consumer.

    ``count()`` before and after a call tells whether the call put anything on the topic.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> None:
        self._topic = topic
        self._timeout = timeout
        self._consumer = _reader(kafka)
        metadata = self._consumer.list_topics(topic, timeout=timeout)
        self._partitions = sorted(metadata.topics[topic].partitions)

    def count(self) -> int:
        total = 0
        for partition in self._partitions:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=self._timeout, cached=False
            )
            total += high
        return total

    def close(self) -> None:
        self._consumer.close()
