"""Bring a partition's pull requests up to date from the compacted pull-requests topic.

The restore reads with ``isolation.level=read_committed`` from the state's checkpoint (or the
beginning) up to partition EOF,
which librdkafka reports at the last stable offset: every committed snapshot is seen, nothing of
an open or aborted transaction. The caller first waits for the commands partition's committed
offset (``Consumer.committed`` waits for pending transactional offsets under read_committed), so
a predecessor's transaction is resolved, committed or aborted, before the snapshots are read.

That alone is not enough on a cluster: a transaction's commit markers reach its partitions
independently (the transaction coordinator writes each to that partition's leader), so the
marker on ``__consumer_offsets`` can be written while the one on the pull-requests partition is
still on its way. The restore would then end at a last stable offset before the predecessor's
last snapshots and the next command would be decided on an older version. So before reading,
:func:`wait_for_open_transactions` waits until each partition's last stable offset (what a
``read_committed`` reader sees) has reached its log end (``read_uncommitted``) as of the start
of the restore (both from the admin client's ListOffsets): every transaction that had written
there is then committed or aborted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka import admin as kafka_admin
from confluent_kafka.admin import AdminClient

from prgate.kafka import codec
from processor.state_store import PartitionState

log = logging.getLogger(__name__)

_CONSUME_BATCH = 5000
_CONSUME_WAIT_S = 0.2
_WRITE_CHUNK = 5000  # records of one partition per state write while restoring


@dataclass
class RestoreStats:
    """What one restore did: records replayed, partitions restored from the beginning
    (``cold``), partitions whose store was reset with the reason, and its duration."""

    records: int = 0
    cold: list[int] = field(default_factory=list)
    rebuilt: dict[int, str] = field(default_factory=dict)
    ms: float = 0.0


class RestoreError(Exception):
    """The pull-requests topic could not be read completely, in time, or holds garbage."""


_SETTLE_POLL_S = 0.05
# Bound of one offsets query. A query for a partition whose leader just died waits for that
# leader up to its timeout (seen: the whole restore deadline, 2 min); a short bound fails with
# _TIMED_OUT instead, and the caller retries the restore once metadata has moved on.
QUERY_TIMEOUT_S = 5.0


def _query_timeout(deadline: float) -> float:
    return max(1.0, min(QUERY_TIMEOUT_S, deadline - time.monotonic()))


def log_ends(
    admin: AdminClient,
    topic: str,
    partitions: Sequence[int],
    isolation: IsolationLevel,
    deadline: float,
    *,
    start: bool = False,
) -> dict[int, int]:
    """Each partition's end as a reader with ``isolation`` sees it: the last stable offset
    (READ_COMMITTED) or the high watermark (READ_UNCOMMITTED), from one ListOffsets; with
    ``start`` its log start offset instead.

    The admin client looks each partition's leader up afresh, so a leader that just died is
    not asked again (an idle consumer's cached metadata kept sending such queries to a dead
    broker for a minute). Bounded by :data:`QUERY_TIMEOUT_S`; KafkaException (``_TIMED_OUT``
    when the bound passed) when it fails.
    """
    timeout = _query_timeout(deadline)
    spec_type = kafka_admin.OffsetSpec  # type: ignore[attr-defined]
    spec = spec_type.earliest() if start else spec_type.latest()  # type: ignore[no-untyped-call]
    futures = admin.list_offsets(
        {TopicPartition(topic, n): spec for n in partitions},
        isolation_level=isolation,
        request_timeout=timeout,
    )
    ends: dict[int, int] = {}
    for partition, future in futures.items():
        try:
            ends[partition.partition] = int(future.result(timeout=timeout + 1.0).offset)
        except FutureTimeout as exc:
            raise KafkaException(
                KafkaError(KafkaError._TIMED_OUT, f"ListOffsets of {topic}", retriable=True)
            ) from exc
    return ends


def wait_for_open_transactions(
    admin: AdminClient, topic: str, partitions: Sequence[int], deadline: float
) -> float:
    """Wait until no transaction that had written to ``topic``'s ``partitions`` before this
    call is open: each partition's last stable offset (what a ``read_committed`` reader sees)
    has reached its log end as of now (``read_uncommitted``), both from :func:`log_ends`.

    Returns the seconds waited. An open transaction is resolved by its commit or abort marker,
    at the latest by the coordinator's abort after ``transaction.timeout.ms``; RestoreError
    when ``deadline`` (``time.monotonic()``) passes first, KafkaException when the offsets
    cannot be queried.
    """
    started = time.monotonic()
    ends = log_ends(admin, topic, partitions, IsolationLevel.READ_UNCOMMITTED, deadline)
    logged = False
    while True:
        stable = log_ends(admin, topic, partitions, IsolationLevel.READ_COMMITTED, deadline)
        open_ = {n: (stable[n], ends[n]) for n in ends if stable[n] < ends[n]}
        if not open_:
            waited = time.monotonic() - started
            if logged:
                log.info(
                    "restore_transactions_settled",
                    extra={
                        "topic": topic,
                        "partitions": sorted(ends),
                        "waited_s": round(waited, 3),
                    },
                )
            return waited
        if not logged:
            log.info(
                "restore_waiting_for_transactions",
                extra={
                    "topic": topic,
                    "open": {str(n): f"{lso}<{high}" for n, (lso, high) in sorted(open_.items())},
                },
            )
            logged = True
        if time.monotonic() + _SETTLE_POLL_S > deadline:
            raise RestoreError(
                f"transactions on {topic} partitions {sorted(open_)} stayed open (last stable "
                f"offset below the log end: {open_}) until the restore's deadline"
            )
        time.sleep(_SETTLE_POLL_S)


def _progress(message: Message) -> bool:
    """A record, or a partition's end: what moves a restore's stall bound."""
    error = message.error()
    return error is None or error.code() == KafkaError._PARTITION_EOF


def restore_partitions(
    consumer: Consumer,
    topic: str,
    states: Mapping[int, PartitionState],
    timeout_s: float,
    committed: Mapping[int, int] | None = None,
    *,
    offsets: AdminClient | None = None,
) -> RestoreStats:
    """Bring each partition's state up to the end of its pull-requests partition.

    A state with a checkpoint inside the partition's offsets replays only the records from the
    checkpoint (a warm store); one without replays from the beginning. A checkpoint past the
    log end (the store is ahead of the committed log: the topic was recreated or truncated, or
    the store came from elsewhere) or before the log start is not trusted: that state is reset
    and rebuilt from the beginning. So is one whose last applied transaction claims more of
    the commands partition than the group committed (``committed``: partition -> the group's
    committed commands offset, fetched after any predecessor's transaction was resolved; a
    negative one counts as nothing committed, a missing one is not checked): it holds the
    state of a transaction that never committed, which the log-end check cannot see, because
    the aborted records and their abort marker lie past the checkpoint. Each written chunk
    carries the offset after its last record as the new checkpoint; the end of the partition
    (read_committed: the last stable offset)
    becomes the final one.

    ``consumer`` must be an assign-only consumer with ``enable.partition.eof=true`` and
    ``isolation.level=read_committed``; it is left unassigned. ``offsets``, an admin client,
    is used to wait for transactions still open on the partitions first
    (:func:`wait_for_open_transactions`; without it the restore reads up to the last stable
    offset as it is). A tombstone removes its key.
    Raises :class:`RestoreError` when the waits before reading take longer than ``timeout_s``,
    when reading goes ``timeout_s`` without a record or a partition's end, or on a record
    that is not a usable
    snapshot (:func:`prgate.kafka.codec.decode_snapshot`, and it must have a key): a processor
    that ran on partial state would break the version sequence. KafkaException when the
    offsets cannot be queried.
    """
    stats = RestoreStats()
    wanted = sorted(states)
    if not wanted:
        return stats
    started = time.monotonic()
    deadline = started + timeout_s
    if offsets is not None:
        wait_for_open_transactions(offsets, topic, wanted, deadline)
    starts: list[TopicPartition] = []
    warm = [n for n in wanted if states[n].checkpoint() is not None]
    bounds: dict[int, tuple[int, int]] = {}
    if warm and offsets is not None:
        lows = log_ends(offsets, topic, warm, IsolationLevel.READ_COMMITTED, deadline, start=True)
        highs = log_ends(offsets, topic, warm, IsolationLevel.READ_COMMITTED, deadline)
        bounds = {n: (lows[n], highs[n]) for n in warm}
    for number in wanted:
        state = states[number]
        checkpoint = state.checkpoint()
        if checkpoint is not None:
            if number in bounds:
                low, high = bounds[number]
            else:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, number), timeout=_query_timeout(deadline)
                )
            reason = ""
            applied = state.commands_offset()
            group = None if committed is None else committed.get(number)
            if group is not None:
                group = max(-1, group)  # OFFSET_INVALID: the group committed nothing yet
            if checkpoint > high:
                reason = "ahead_of_log"
            elif checkpoint < low:
                reason = "behind_log_start"
            elif applied is not None and group is not None and applied > group:
                reason = "ahead_of_commits"
            if reason:
                log.warning(
                    "state_store_untrusted",
                    extra={
                        "topic": topic,
                        "partition": number,
                        "checkpoint": checkpoint,
                        "log_start": low,
                        "log_end": high,
                        "commands_applied": applied,
                        "commands_committed": group,
                        "reason": reason,
                    },
                )
                state.reset(reason)
                stats.rebuilt[number] = reason
                checkpoint = None
        if checkpoint is None:
            stats.cold.append(number)
        starts.append(
            TopicPartition(topic, number, OFFSET_BEGINNING if checkpoint is None else checkpoint)
        )
    pending = set(wanted)
    changes: dict[int, dict[bytes, bytes | None]] = {p: {} for p in wanted}
    positions: dict[int, int] = {}

    def flush(partition: int, checkpoint: int | None) -> None:
        states[partition].restore(changes[partition], checkpoint)
        changes[partition] = {}

    consumer.assign(starts)
    # Reading is bounded by progress, not in total: a cold restore of millions of snapshots
    # takes as long as it takes (10M: about two minutes here); what must not last is a read
    # that stalls. Every record and every partition's end moves the bound.
    stalled_by = time.monotonic() + timeout_s
    try:
        while pending:
            if time.monotonic() > stalled_by:
                raise RestoreError(
                    f"restoring {topic} partitions {sorted(pending)} did not reach the end: "
                    f"nothing read for {timeout_s:.0f}s"
                )
            messages = consumer.consume(_CONSUME_BATCH, _CONSUME_WAIT_S)
            if any(_progress(m) for m in messages):
                stalled_by = time.monotonic() + timeout_s
            for message in messages:
                error = message.error()
                partition = message.partition()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if partition is not None and partition in pending:
                            pending.discard(partition)
                            eof = message.offset()
                            end = max(eof if eof is not None else -1, positions.get(partition, -1))
                            flush(partition, end if end >= 0 else None)
                            # Restored records were written without the WAL: make them
                            # durable now, not in the first transaction after the restore.
                            states[partition].persist()
                        continue
                    if error.fatal():
                        raise RestoreError(f"reading {topic} failed: {error}")
                    log.warning("restore_consumer_error", extra={"topic": topic, "error": error})
                    continue
                if partition is None or partition not in states:
                    continue
                key = message.key()
                offset = message.offset() or 0
                if key is None:
                    raise RestoreError(f"{topic} [{partition}] offset {offset} has no key")
                value = message.value()
                try:
                    # Checked, then dropped at once (cheap: upb reuses the memory); the state
                    # takes the bytes as the topic carries them, not encoded again.
                    codec.decode_snapshot(key, value, message.headers())
                except codec.Undecodable as exc:
                    raise RestoreError(
                        f"{topic} [{partition}] offset {offset} is not a PullRequest: {exc}"
                    ) from exc
                stats.records += 1
                changes[partition][key] = value
                positions[partition] = offset + 1
                if len(changes[partition]) >= _WRITE_CHUNK:
                    flush(partition, offset + 1)
    finally:
        consumer.unassign()
    stats.ms = (time.monotonic() - started) * 1000
    log.info(
        "partitions_restored",
        extra={
            "topic": topic,
            "partitions": list(wanted),
            "cold": list(stats.cold),
            "rebuilt": {str(p): r for p, r in sorted(stats.rebuilt.items())},
            "records": stats.records,
            "pull_requests": sum(states[p].count() for p in wanted),
            "ms": round(stats.ms),
        },
    )
    return stats
