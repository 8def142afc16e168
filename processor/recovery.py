"""After a failed transaction: rewind the consumer, and find out whether the batch committed.

A failed ``commit_transaction`` does not always mean an aborted transaction. The call can time
out, or hang (a wedged producer), after the transaction coordinator already received EndTxn;
the replacement producer's ``init_transactions`` then *completes* that commit. Dropping the
batch's staged state in that case would leave the in-memory state behind what Kafka holds, and
the next command of one of its pull requests would repeat a version.

The committed offsets tell: the batch's offsets commit in its own transaction, so once the
transaction is resolved (the new producer is initialised, or the abort returned), the group's
committed offset of each of the batch's partitions is either the batch's end offset (it
committed) or still what it was before (it aborted). The consumer reads them with
``require_stable`` (librdkafka asks for stable offsets under ``isolation.level=read_committed``),
so a still pending transactional commit is waited for, never read as absent.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)

COMMITTED_TIMEOUT_S = 10.0
REWIND_RETRY_S = 1.0
# Failed tries of the group consumer before a fresh consumer of the group is asked instead: a
# consumer whose coordinator connection did not recover from a broker outage keeps timing out.
FRESH_AFTER_FAILURES = 3

CommittedFetch = Callable[[list[TopicPartition], float], list[TopicPartition]]


class RewindStopped(Exception):
    """A stop request came before the consumer could be rewound."""


class Verdict(enum.Enum):
    COMMITTED = "committed"
    ABORTED = "aborted"
    MIXED = "mixed"  # cannot happen for one transaction; handled without guessing


def batch_verdict(
    batch_offsets: Mapping[int, int], committed: Mapping[int, int]
) -> tuple[Verdict, list[int]]:
    """Whether a batch's transaction committed, from the group's committed offsets.

    ``batch_offsets``: the batch's end offset (last offset + 1) per partition; ``committed``:
    the committed offset per assigned partition (negative: none). A partition of the batch that
    is no longer assigned says nothing (its state is not ours to keep). Returns the verdict and,
    for MIXED, the batch's partitions whose state must be restored from Kafka.
    """
    known = sorted(p for p in batch_offsets if p in committed)
    done = [p for p in known if committed[p] >= batch_offsets[p]]
    if known and len(done) == len(known):
        return Verdict.COMMITTED, []
    if not done:
        return Verdict.ABORTED, []
    return Verdict.MIXED, known


def rewind(
    consumer: Consumer, stop: threading.Event, fresh: CommittedFetch | None = None
) -> dict[int, int]:
    """Seek every assigned partition back to its committed offset; returns those offsets.

    Without the rewind the records of an aborted batch would be skipped, so this retries (each
    try bounded by ``COMMITTED_TIMEOUT_S``) for as long as it takes, e.g. while the broker is
    down; a stop request ends it with :class:`RewindStopped` (the next start resumes from the
    committed offsets anyway). After ``FRESH_AFTER_FAILURES`` failed tries in a row the offsets
    are fetched with ``fresh`` (a new consumer of the same group, see
    :meth:`processor.membership.GroupMember.fresh_committed`) on every other try.
    """
    assignment = consumer.assignment()
    if not assignment:
        return {}
    failures = 0
    while True:
        try:
            if fresh is not None and failures >= FRESH_AFTER_FAILURES and failures % 2 == 1:
                committed = fresh(assignment, COMMITTED_TIMEOUT_S)
            else:
                committed = consumer.committed(assignment, timeout=COMMITTED_TIMEOUT_S)
            for tp in committed:
                if tp.error is not None:
                    raise KafkaException(tp.error)
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            break
        except KafkaException as exc:
            if stop.is_set():
                raise RewindStopped(f"stopped before the rewind succeeded: {exc}") from exc
            failures += 1
            log.warning("rewind_retry", extra={"error": exc, "failures": failures})
            time.sleep(REWIND_RETRY_S)
    log.info(
        "consumer_rewound",
        extra={"offsets": ",".join(f"{tp.partition}@{tp.offset}" for tp in committed)},
    )
    return {tp.partition: tp.offset for tp in committed}
