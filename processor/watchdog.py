"""Notice a group consumer that stops delivering records although its partitions have some.

After a broker restart, librdkafka's consumer has been seen (CI, rarely) to sit idle inside
``consume()`` for good: partitions assigned, commands piling up behind them, nothing fetched,
no error. The loop cannot tell that from a quiet topic by itself, so while ``consume()``
returns nothing the watchdog asks the brokers (at most every ``check_every_s``, each query
bounded, on connections of its own: :func:`lagging_partitions`) whether an assigned partition
has records beyond the consumer's position (or its committed offset, before the first record).
When that stays so, with nothing delivered, for ``stall_s``, the consumer is declared wedged
and replaced by a new one (:class:`processor.membership.GroupMember`), which rejoins the group
and restores its partitions from the compacted topic as on any assignment. No transaction is
open at that point, so no state or offset is lost; the worst a false alarm costs is a rebalance
and a restore, and repeated alarms back off (``stall_s`` doubles up to ``MAX_STALL_S`` until
records flow again).

A query that fails (Kafka unreachable) proves nothing and restarts the stall clock: an outage
is not a wedged consumer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from processor.restore import log_ends
from processor.txn_producer import StuckCallError, bounded_call

log = logging.getLogger(__name__)

STALL_S = 20.0
MAX_STALL_S = 300.0
CHECK_EVERY_S = 5.0
QUERY_TIMEOUT_S = 2.0
CLOSE_LIMIT_S = 10.0


def lagging_partitions(
    consumer: Consumer, offsets: AdminClient, timeout_s: float
) -> dict[int, tuple[int, int]] | None:
    """``{partition: (next offset to read, last stable offset)}`` of the assigned partitions
    that have records to read; ``None`` when the brokers could not tell (each query bounded by
    ``timeout_s``).

    The ends come from ``offsets``, an admin client, in one ListOffsets per kind (read_committed
    ends; log starts only for partitions without a position or committed offset), never from
    the consumer's own ``get_watermark_offsets(cached=False)``: that request goes to the
    partition's leader on the consumer's fetch connection, where the broker answers requests
    in order, so it waited behind the fetch the broker holds for ``fetch.wait.max.ms``
    (500 ms) once per partition, and the loop, blocked in it, left new commands waiting 0.5-1.5 s
    after every quiet moment. The committed offsets (before a partition's first record) come
    from the group coordinator's own connection.
    """
    assignment: list[TopicPartition] = consumer.assignment()
    if not assignment:
        return {}
    topic = assignment[0].topic
    deadline = time.monotonic() + timeout_s
    try:
        positions = consumer.position(assignment)
        unstarted = [tp for tp in positions if tp.offset < 0]
        committed = {
            tp.partition: tp.offset
            for tp in (consumer.committed(unstarted, timeout=timeout_s) if unstarted else [])
        }
        starts = {
            tp.partition: tp.offset if tp.offset >= 0 else committed.get(tp.partition, -1)
            for tp in positions
        }
        ends = log_ends(offsets, topic, sorted(starts), IsolationLevel.READ_COMMITTED, deadline)
        unknown = sorted(n for n, start in starts.items() if start < 0)
        if unknown:  # auto.offset.reset=earliest: reading starts at the log start
            starts.update(
                log_ends(
                    offsets, topic, unknown, IsolationLevel.READ_COMMITTED, deadline, start=True
                )
            )
    except (KafkaException, RuntimeError, TypeError) as exc:
        log.debug("watermark_query_failed", extra={"error": exc})
        return None
    return {n: (start, ends[n]) for n, start in starts.items() if start < ends[n]}


class ConsumerWatchdog:
    """Tells the loop when its consumer looks wedged (see the module docstring)."""

    def __init__(
        self,
        *,
        stall_s: float = STALL_S,
        check_every_s: float = CHECK_EVERY_S,
        query_timeout_s: float = QUERY_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        lagging: Callable[[Consumer, float], dict[int, tuple[int, int]] | None],
    ) -> None:
        self._base_stall_s = stall_s
        self._stall_s = stall_s
        self._check_every_s = check_every_s
        self._query_timeout_s = query_timeout_s
        self._clock = clock
        self._lagging = lagging
        self._last_check = clock()
        self._stuck_since: float | None = None
        self._abandoned: list[Consumer] = []

    def delivered(self) -> None:
        """``consume()`` returned records: the consumer works."""
        self._stuck_since = None
        self._stall_s = self._base_stall_s

    def idle(self, consumer: Consumer) -> str | None:
        """``consume()`` returned nothing. Returns why the consumer is wedged, or None."""
        now = self._clock()
        if now - self._last_check < self._check_every_s:
            return None
        self._last_check = now
        lagging = self._lagging(consumer, self._query_timeout_s)
        if not lagging:  # caught up, nothing assigned, or unknown
            self._stuck_since = None
            return None
        if self._stuck_since is None:
            self._stuck_since = now
            return None
        stuck_s = now - self._stuck_since
        if stuck_s < self._stall_s:
            return None
        self._stuck_since = None
        self._stall_s = min(self._stall_s * 2, MAX_STALL_S)
        behind = ",".join(f"{p}@{start}<{high}" for p, (start, high) in sorted(lagging.items()))
        return f"nothing consumed for {stuck_s:.0f}s with records waiting: {behind}"

    def retire(self, consumer: Consumer) -> None:
        """Close a replaced consumer (bounded); one that does not close is left behind."""
        try:
            bounded_call("close_consumer", consumer.close, CLOSE_LIMIT_S)
        except (KafkaException, RuntimeError) as exc:
            log.warning("old_consumer_close_failed", extra={"error": exc})
        except StuckCallError:
            self._abandoned.append(consumer)
            log.error("consumer_abandoned", extra={"abandoned": len(self._abandoned)})
