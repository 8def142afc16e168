"""``prgate events tail``: the simplest downstream consumer of the events topic.

A plain confluent-kafka consumer with ``isolation.level=read_committed`` (only events of
committed processor transactions), assigned to every partition of the events topic, from the
end (the last stable offset, so no half of an open transaction) or ``--from-beginning``. It
commits nothing and joins no group: each run reads on its own. Every record is decoded as an
``EventEnvelope`` and printed on one line (``--json``: protobuf JSON Lines).

    prgate events tail                         # live, until Ctrl-C
    prgate events tail --from-beginning --max 10 --timeout 30 --json

With ``--max N`` it exits 0 after N events, or 3 when ``--timeout`` passes first; without
``--max``, ``--timeout`` simply ends the tail (exit 0).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # not re-exported for mypy

from prgate.cli import render
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import topic_partitions
from prgate.settings import add_arguments, count_flag, load

EXIT_OK, EXIT_FAILED, EXIT_NOT_REACHED = 0, 1, 3
METADATA_TIMEOUT = 15.0


class TailError(Exception):
    """An expected failure (no such topic, broker unreachable): one line, exit 1."""


@dataclass(frozen=True)
class TailOptions:
    from_beginning: bool = False
    as_json: bool = False
    max_events: int = 0
    timeout: float | None = None


def start_offsets(
    kafka: KafkaSettings, topic: str, *, from_beginning: bool
) -> list[TopicPartition]:
    """Every partition of ``topic`` with its start: the beginning, or the last stable offset.

    The end is resolved here, before reading, so an event committed after this returns is
    always shown (OFFSET_END would be resolved later, on the first fetch).
    """
    # log_level 4: librdkafka's informational lines (e.g. on close) would garble the output.
    admin = AdminClient(kafka.client_config(log_level=4))
    try:
        partitions = topic_partitions(admin, topic, METADATA_TIMEOUT)
    except KafkaException as exc:
        raise TailError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    if partitions is None:
        raise TailError(f"topic {topic} does not exist (run `prgate topics ensure`)")
    if from_beginning:
        return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    futures = admin.list_offsets(
        {TopicPartition(topic, p): latest for p in partitions},
        isolation_level=IsolationLevel.READ_COMMITTED,
        request_timeout=METADATA_TIMEOUT,
    )
    try:
        return [
            TopicPartition(topic, tp.partition, future.result().offset)
            for tp, future in futures.items()
        ]
    except KafkaException as exc:
        raise TailError(f"cannot read the end offsets of {topic}: {exc}") from exc


def tail(kafka: KafkaSettings, options: TailOptions, out: Any = None) -> int:
    """Print events as they are committed; returns the exit code."""
    out = out or sys.stdout
    topic = kafka.topics.events
    assignment = start_offsets(kafka, topic, from_beginning=options.from_beginning)
    consumer = Consumer(
        kafka.client_config(
            **{
                "group.id": f"prgate-events-tail-{uuid.uuid4().hex[:8]}",  # never joined
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
            }
        )
    )
    deadline = None if options.timeout is None else time.monotonic() + options.timeout
    shown = 0
    try:
        consumer.assign(assignment)
        start = "the beginning" if options.from_beginning else "the end"
        print(
            f"tailing {topic} ({len(assignment)} partitions) from {start}",
            file=sys.stderr,
            flush=True,
        )
        while deadline is None or time.monotonic() < deadline:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            message = consumer.poll(wait)
            if message is None:
                continue
            if message.error() is not None:
                print(f"prgate: kafka: {message.error()}", file=sys.stderr)
                continue
            try:
                event = codec.decode_event(message.value(), message.headers())
            except codec.Undecodable as exc:
                print(
                    f"prgate: undecodable record at {topic}/{message.partition()}"
                    f"@{message.offset()}: {exc}",
                    file=sys.stderr,
                )
                continue
            print(render.to_json(event) if options.as_json else render.event_line(event), file=out)
            out.flush()
            shown += 1
            if options.max_events and shown >= options.max_events:
                return EXIT_OK
    finally:
        consumer.close()
    if options.max_events:
        print(
            f"prgate: {shown} of {options.max_events} events within {options.timeout:g}s",
            file=sys.stderr,
        )
        return EXIT_NOT_REACHED
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    kafka = load(KafkaSettings, args)
    options = TailOptions(
        from_beginning=args.from_beginning,
        as_json=args.json,
        max_events=args.max,
        timeout=args.timeout,
    )
    try:
        return tail(kafka, options)
    except TailError as exc:
        print(f"prgate: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def register(sub: Any) -> None:
    """Add ``prgate events tail`` to the top-level subparsers of ``prgate``."""
    events = sub.add_parser("events", help="read the events topic")
    actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("tail", help="decode and print events as they are committed")
    add_arguments(p, KafkaSettings)
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    p.add_argument("--json", action="store_true", help="protobuf JSON, one event per line")
    p.add_argument("--max", type=count_flag(int), default=0, help="stop after this many events")
    p.add_argument(
        "--timeout", type=count_flag(float), default=None, help="stop after these seconds"
    )
    p.set_defaults(func=_run)
