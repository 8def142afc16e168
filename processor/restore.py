"""Rebuild a partition's pull requests from the compacted pull-requests topic.

The restore reads with ``isolation.level=read_committed`` from the beginning up to partition EOF,
which librdkafka reports at the last stable offset: every committed snapshot is seen, nothing of
an open or aborted transaction. The caller first waits for the commands partition's committed
offset (``Consumer.committed`` waits for pending transactional offsets under read_committed), so
a predecessor's transaction is resolved, committed or aborted, before the snapshots are read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from google.protobuf.message import DecodeError

from prgate.v1.pull_request_pb2 import PullRequest

log = logging.getLogger(__name__)

_CONSUME_BATCH = 1000
_CONSUME_WAIT_S = 0.2


class RestoreError(Exception):
    """The pull-requests topic could not be read completely, in time, or holds garbage."""


def restore_partitions(
    consumer: Consumer, topic: str, partitions: Iterable[int], timeout_s: float
) -> dict[int, dict[str, PullRequest]]:
    """The latest committed PullRequest per key of each partition of ``topic``.

    ``consumer`` must be an assign-only consumer with ``enable.partition.eof=true`` and
    ``isolation.level=read_committed``; it is left unassigned. A tombstone removes its key.
    Raises :class:`RestoreError` after ``timeout_s`` or on a value that is not a PullRequest:
    a processor that ran on partial state would break the version sequence.
    """
    wanted = sorted(set(partitions))
    states: dict[int, dict[str, PullRequest]] = {p: {} for p in wanted}
    if not wanted:
        return states
    started = time.monotonic()
    deadline = started + timeout_s
    pending = set(wanted)
    records = 0
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in wanted])
    try:
        while pending:
            if time.monotonic() > deadline:
                raise RestoreError(
                    f"restoring {topic} partitions {sorted(pending)} did not reach the end "
                    f"within {timeout_s:.0f}s"
                )
            for message in consumer.consume(_CONSUME_BATCH, _CONSUME_WAIT_S):
                error = message.error()
                partition = message.partition()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition if partition is not None else -1)
                        continue
                    if error.fatal():
                        raise RestoreError(f"reading {topic} failed: {error}")
                    log.warning("event=restore_consumer_error topic=%s error=%s", topic, error)
                    continue
                if partition is None or partition not in states:
                    continue
                key = message.key()
                if key is None:
                    raise RestoreError(
                        f"{topic} [{partition}] offset {message.offset()} has no key"
                    )
                pull_request_id = key.decode("utf-8", errors="replace")
                value = message.value()
                records += 1
                if value is None:
                    states[partition].pop(pull_request_id, None)
                    continue
                state = PullRequest()
                try:
                    state.ParseFromString(value)
                except DecodeError as exc:
                    raise RestoreError(
                        f"{topic} [{partition}] offset {message.offset()} is not a PullRequest: "
                        f"{exc}"
                    ) from exc
                states[partition][pull_request_id] = state
    finally:
        consumer.unassign()
    log.info(
        "event=partitions_restored topic=%s partitions=%s records=%d pull_requests=%d ms=%.0f",
        topic,
        ",".join(str(p) for p in wanted),
        records,
        sum(len(s) for s in states.values()),
        (time.monotonic() - started) * 1000,
    )
    return states
