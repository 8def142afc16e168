"""``prgate decode TOPIC``: any topic's records, in an offset range, as JSON Lines.

Values are decoded with the descriptor set shipped in the package
(``prgate/v1/descriptors.binpb``, the one gRPC reflection serves), in a descriptor pool of its
own: the type is the record's ``message-type`` header, else ``--type``, else the type of the
project's topic of that name (``commands``: ``prgate.v1.CommandEnvelope``, …). Each record is
one line::

    {"topic": "prgate.pull-request-events", "partition": 0, "offset": 3,
     "timestamp_ms": 1796095885976, "key": "pr-…", "headers": {"message-type": "…"},
     "message_type": "prgate.v1.EventEnvelope", "value": {…protobuf JSON…}}

A tombstone has ``"value": null``; a value that does not decode keeps its bytes as
``"value_base64"`` with ``"error"`` saying why, and the run goes on. The range is per partition:
``--start-offset`` (default: the beginning) up to ``--end-offset`` (exclusive; default: the end
when the run starts: the last stable offset, as records are read ``read_committed`` unless
``--read-uncommitted``). It joins no consumer group and commits nothing. Exit 0 when every
partition reached its end, 3 when ``--timeout`` came first, 1 when the topic does not exist or
Kafka cannot be reached.

    prgate decode prgate.pull-request-events --partition 0 --start-offset 10 --end-offset 20
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
import uuid
from functools import cache
from importlib import resources
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError

from prgate.kafka import codec
from prgate.kafka.contract import (
    HEADER_MESSAGE_TYPE,
    TYPE_COMMAND_ENVELOPE,
    TYPE_COMMAND_REFUSAL,
    TYPE_COMMAND_RESULT,
    TYPE_EVENT_ENVELOPE,
    TYPE_PULL_REQUEST,
)
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import topic_partitions
from prgate.settings import add_arguments, count_flag, load

EXIT_OK, EXIT_FAILED, EXIT_NOT_REACHED = 0, 1, 3
DESCRIPTOR_SET = "descriptors.binpb"
METADATA_TIMEOUT = 15.0


class DecodeFailed(Exception):
    """An expected failure (no such topic, Kafka unreachable, unknown type): one line, exit 1."""


@cache
def shipped_pool() -> descriptor_pool.DescriptorPool:
    """A descriptor pool of the package's descriptor set alone (not the generated classes')."""
    data = (resources.files("prgate.v1") / DESCRIPTOR_SET).read_bytes()
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(file)
    return pool


def to_json(message_type: str, value: bytes) -> Any:
    """``value`` parsed as ``message_type`` from the shipped descriptor set, as protobuf JSON
    (a dict). Raises ``KeyError`` for a type the set lacks, ``DecodeError`` for bad bytes."""
    pool = shipped_pool()
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(message_type))
    message = cls.FromString(value)
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, descriptor_pool=pool
    )


def default_types(kafka: KafkaSettings) -> dict[str, str]:
    """The value type of each of the project's topics (a record without ``message-type``)."""
    topics = kafka.topics
    return {
        topics.commands: TYPE_COMMAND_ENVELOPE,
        topics.dlq: TYPE_COMMAND_ENVELOPE,
        topics.events: TYPE_EVENT_ENVELOPE,
        topics.pull_requests: TYPE_PULL_REQUEST,
        topics.results: TYPE_COMMAND_RESULT,
        topics.refusals: TYPE_COMMAND_REFUSAL,
    }


def record_line(
    topic: str,
    *,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    headers: codec.RawHeaders,
    fallback_type: str | None,
) -> dict[str, Any]:
    """One record as the dict printed on its line (see the module docstring)."""
    texts = codec.header_texts(headers)
    message_type = texts.get(HEADER_MESSAGE_TYPE) or fallback_type
    line: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "key": None if key is None else key.decode("utf-8", "backslashreplace"),
        "headers": texts,
        "message_type": message_type,
    }
    if value is None:
        line["value"] = None
    elif message_type is None:
        line["value_base64"] = base64.b64encode(value).decode()
        line["error"] = "no message-type header and no --type"
    else:
        try:
            line["value"] = to_json(message_type, value)
        except KeyError:
            line["value_base64"] = base64.b64encode(value).decode()
            line["error"] = f"{message_type} is not in the descriptor set"
        except DecodeError as exc:
            line["value_base64"] = base64.b64encode(value).decode()
            line["error"] = f"not a {message_type}: {exc}"
        except (json_format.Error, ValueError, TypeError) as exc:
            # Parsed, but not showable as JSON (a Timestamp out of range): bytes prgate never
            # wrote; shown as the line of any undecodable record instead of a traceback.
            line["value_base64"] = base64.b64encode(value).decode()
            line["error"] = f"{message_type} cannot be shown as JSON: {exc}"
    return line


def _partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    admin = AdminClient(kafka.client_config(log_level=4))
    try:
        partitions = topic_partitions(admin, topic, METADATA_TIMEOUT)
    except KafkaException as exc:
        raise DecodeFailed(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    if partitions is None:
        raise DecodeFailed(f"topic {topic} does not exist")
    return partitions


def decode(
    kafka: KafkaSettings,
    topic: str,
    *,
    partitions: list[int] | None = None,
    start_offset: int | None = None,
    end_offset: int | None = None,
    message_type: str | None = None,
    read_committed: bool = True,
    timeout: float | None = None,
    out: TextIO | None = None,
) -> int:
    """Print ``topic``'s records in the range as JSON Lines on ``out``; the exit code."""
    out = out or sys.stdout
    fallback = message_type or default_types(kafka).get(topic)
    if fallback is not None:
        try:
            shipped_pool().FindMessageTypeByName(fallback)
        except KeyError:
            raise DecodeFailed(f"--type {fallback} is not in the descriptor set") from None
    existing = _partitions(kafka, topic)
    chosen = existing if partitions is None else partitions
    missing = sorted(set(chosen) - set(existing))
    if missing:
        raise DecodeFailed(f"topic {topic} has no partition {missing[0]}")
    consumer = Consumer(
        kafka.client_config(
            **{
                "group.id": f"prgate-decode-{uuid.uuid4().hex[:8]}",  # never joined
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "log_level": 4,
            }
        )
    )
    start = -2 if start_offset is None else start_offset  # -2: OFFSET_BEGINNING
    open_partitions = set(chosen)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        consumer.assign([TopicPartition(topic, p, start) for p in chosen])
        while open_partitions and (deadline is None or time.monotonic() < deadline):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(message.partition())
                    continue
                raise DecodeFailed(f"kafka: {error}")
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None or partition not in open_partitions:
                continue
            if end_offset is not None and offset >= end_offset:
                open_partitions.discard(partition)
                continue
            line = record_line(
                topic,
                partition=partition,
                offset=offset,
                timestamp_ms=message.timestamp()[1],
                key=message.key(),
                value=message.value(),
                headers=message.headers(),
                fallback_type=fallback,
            )
            print(json.dumps(line, ensure_ascii=True), file=out, flush=True)
    finally:
        consumer.close()
    if open_partitions:
        print(
            f"prgate: partitions {sorted(open_partitions)} of {topic} not read to their end "
            f"within {timeout:g}s",
            file=sys.stderr,
        )
        return EXIT_NOT_REACHED
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    kafka = load(KafkaSettings, args)
    try:
        return decode(
            kafka,
            args.topic,
            partitions=args.partition,
            start_offset=args.start_offset,
            end_offset=args.end_offset,
            message_type=args.type,
            read_committed=not args.read_uncommitted,
            timeout=args.timeout,
        )
    except DecodeFailed as exc:
        print(f"prgate: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def register(sub: Any) -> None:
    """Add ``prgate decode`` to the top-level subparsers of ``prgate``."""
    p = sub.add_parser("decode", help="print any topic's records as JSON Lines, decoded")
    p.add_argument("topic", metavar="TOPIC", help="the full topic name (with its prefix)")
    add_arguments(p, KafkaSettings)
    p.add_argument(
        "--partition",
        type=count_flag(int),
        action="append",
        help="only this partition (repeatable)",
    )
    p.add_argument(
        "--start-offset", type=count_flag(int), default=None, help="first offset (default: 0)"
    )
    p.add_argument(
        "--end-offset",
        type=count_flag(int),
        default=None,
        help="stop before this offset (default: the end)",
    )
    p.add_argument("--type", default=None, help="message type when a record has no header")
    p.add_argument(
        "--read-uncommitted",
        action="store_true",
        help="also records of open and aborted transactions",
    )
    p.add_argument(
        "--timeout", type=count_flag(float), default=None, help="give up after these seconds"
    )
    p.set_defaults(func=_run)
