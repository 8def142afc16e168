"""The archive's consumer-group member: four topics in, four Delta tables out, exactly once.

Positions come from the tables, never from the group's committed offsets: on assignment each
new partition's next offset is read from its table's app transaction and the consumer is
assigned there (the beginning when the table has none). Records are buffered per table and
written as one commit when a table holds ``flush_max_records`` records or its oldest record has
waited ``flush_interval_ms``, on revocation (the partitions are still ours) and at a clean
stop. The due batches are decoded and committed by a writer thread (:mod:`archive.writer`)
while this loop goes on consuming, one batch at a time; a rebalance callback and the stop wait
for the batch still out before they touch a table, and a batch that lost a partition's race
drops the records of it buffered since (they are read again from the table's offset). A lost
partition (session timeout) is forgotten without writing; the sink's compare-and-set would
refuse it anyway. After a table commit the Kafka offsets are committed asynchronously, only so
that lag tools show the archive's progress.

Reading is read_committed: aborted transactions of the processor and the gateway's
transactional outputs never reach the tables, and offset gaps (control records) are skipped
again on a re-read from the table's offset.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from deltalake.exceptions import DeltaError

from archive.bulk import to_arrow
from archive.decode import Consumed, TableCodec, table_codecs
from archive.observability import ArchiveMetrics
from archive.settings import ArchiveSettings
from archive.sink import DeltaSink
from archive.writer import WAIT_ALL, WAIT_ANY, Batch, BatchWriter, Written, write
from prgate.observability import logs

log = logging.getLogger(__name__)

CONSUME_BATCH = 2000
CONSUME_TIMEOUT_S = 0.1  # bounds how long a stop request or a due flush waits
DEFERRED_TIMEOUT_S = 0.01  # while a table due by age waits for its writer


@dataclass
class TableBuffer:
    """Records of one topic waiting for their commit, and when the oldest arrived (filled by
    :meth:`Archiver._take` directly)."""

    by_partition: dict[int, list[Message]] = field(default_factory=lambda: defaultdict(list))
    count: int = 0
    oldest: float | None = None

    def drop(self, partition: int) -> None:
        self.count -= len(self.by_partition.pop(partition, []))
        if self.count == 0:
            self.oldest = None

    def take(self) -> dict[int, list[Message]]:
        taken = {p: rs for p, rs in self.by_partition.items() if rs}
        self.by_partition = defaultdict(list)
        self.count, self.oldest = 0, None
        return taken


class Archiver:
    """One member of the archive group; :meth:`run` until ``stop`` is set or a fatal error."""

    def __init__(
        self,
        settings: ArchiveSettings,
        *,
        stop: threading.Event,
        metrics: ArchiveMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._repeats = logs.Repeats()  # of kafka_error lines
        self._stop = stop
        self._metrics = metrics or ArchiveMetrics()
        self._tables: dict[str, TableCodec] = table_codecs(settings.topics)
        root = settings.root_path
        self._sinks = {
            topic: DeltaSink(root / table.spec.name, table.spec, topic)
            for topic, table in self._tables.items()
        }
        self._buffers = {topic: TableBuffer() for topic in self._tables}
        # Warm-up: pyarrow imports pandas on its first conversion of Python values (about a
        # second of CPU here), and the first bulk decode of a table sets up its ptars handler
        # and compute kernels (about 0.1 s); pay it now, not inside the first flushes after an
        # assignment. An empty value runs the bulk and the per-record path.
        for topic, table in self._tables.items():
            to_arrow(table, [Consumed(topic, 0, 0, 0, None, b"", None)], archived_at_us=0)
        # (topic, partition) -> next offset this member accepts; absent: not ours.
        self._positions: dict[tuple[str, int], int] = {}
        self._failure: str | None = None
        self._max_age_s = settings.flush_interval_ms / 1000
        self._consumer = Consumer(settings.consumer_config(self._on_error))
        self._writer = BatchWriter(self._tables, self._sinks, settings.writer_threads)

    # -- rebalance callbacks (run inside consume(); they must not raise) ----------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self._collect(WAIT_ALL)  # the sinks are the writer's while a batch is out
            by_topic: dict[str, list[int]] = defaultdict(list)
            for tp in partitions:
                by_topic[tp.topic].append(tp.partition)
            start: list[TopicPartition] = []
            for topic, numbers in by_topic.items():
                for partition, offset in self._sinks[topic].assign(numbers).items():
                    self._positions[(topic, partition)] = offset or 0
                    begin = OFFSET_BEGINNING if offset is None else offset
                    start.append(TopicPartition(topic, partition, begin))
            consumer.incremental_assign(start)
            log.info(
                "archive_assigned",
                extra={"partitions": [f"{tp.topic}/{tp.partition}@{tp.offset}" for tp in start]},
            )
        except Exception as exc:  # raising here would leave the assignment half-done
            log.exception("archive_assign_failed")
            self._failure = f"assignment failed: {exc}"

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._buffers[tp.topic].drop(tp.partition)
            self._positions.pop((tp.topic, tp.partition), None)
            self._sinks[tp.topic].revoke([tp.partition])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self.flush_all("revoke")  # still ours: fewer re-reads for the next owner
        except Exception as exc:
            log.exception("archive_flush_failed", extra={"reason": "revoke"})
            self._failure = f"flush on revocation failed: {exc}"
        self._forget(partitions)  # the binding unassigns them after this callback
        log.info("archive_revoked", extra={"partitions": _names(partitions)})

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:  # a commit under way lands or loses its compare-and-set, as a flush on this thread
            self._collect(WAIT_ALL)
        except Exception as exc:
            log.exception("archive_flush_failed", extra={"reason": "lost"})
            self._failure = f"flush before losing partitions failed: {exc}"
        self._forget(partitions)  # not ours any more: never write them
        log.warning("archive_lost", extra={"partitions": _names(partitions)})

    def _on_error(self, error: KafkaError) -> None:
        fields = {"code": error.name(), "error": error.str()}
        if error.fatal():
            self._failure = f"fatal Kafka error: {error}"
            log.error("kafka_error", extra=fields)
        else:  # repeats for as long as the broker is away: bounded
            logs.log_repeating(
                log, self._repeats, logging.WARNING, "kafka_error", fields,
                error.name(), logs.masked(error.str()),
            )  # fmt: skip

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Archive until stopped (exit code 0) or a fatal error (1; a restart resumes)."""
        self._consumer.subscribe(
            list(self._tables),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        code = 0
        try:
            deferred = False
            while not self._stop.is_set() and self._failure is None:
                timeout = DEFERRED_TIMEOUT_S if deferred else CONSUME_TIMEOUT_S
                messages = self._consumer.consume(CONSUME_BATCH, timeout)
                self._take(messages, time.monotonic())
                self._collect()
                deferred = self._flush_due(time.monotonic())
            if self._failure is None:
                self.flush_all("stop")
        except (KafkaException, DeltaError, OSError, RuntimeError) as exc:
            self._failure = str(exc)
            log.exception("archive_failed")
        finally:
            if self._failure is not None:
                log.error("archive_stopped", extra={"reason": self._failure.replace(" ", "_")})
                code = 1
            self._writer.close()  # a batch still out: its commit lands or not, before we leave
            self._consumer.close()
        return code

    def _take(self, messages: list[Message], now: float) -> None:
        # Once per consumed record: kept to what the position check needs (no helper call); the
        # message itself is buffered, its fields are taken per batch at the flush.
        positions, buffers = self._positions, self._buffers
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume_error", extra={"error": error})
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            place = (topic, partition)
            expected = positions.get(place)
            if expected is None or offset < expected:
                continue  # not ours (any more), or archived already (fetched before a seek)
            positions[place] = offset + 1
            buffer = buffers[topic]
            buffer.by_partition[partition].append(message)
            buffer.count += 1
            if buffer.oldest is None:
                buffer.oldest = now

    def _flush_due(self, now: float) -> bool:
        """Hand over the tables whose buffers are due; True when one due by age had to wait.

        A table whose last batch is still out waits for it: when due by age, for a later turn
        of the loop (the consumer goes on), when due by size, here. A table that finds every
        writer busy with other tables' batches is committed on this thread when due by age
        (little traffic: the commits of several tables due at once overlap instead of queueing,
        which bounds the delay until visible), and waits for a free writer when due by size, so
        no buffer outgrows the batch size by more than one ``consume()``."""
        deferred = False
        for topic, buffer in self._buffers.items():
            if buffer.count >= self._settings.flush_max_records:
                reason = "size"
            elif buffer.oldest is not None and now - buffer.oldest >= self._max_age_s:
                reason = "age"
            else:
                continue
            if not self._settings.writer_threads:  # on this thread, as one step
                self.flush(topic, reason)
                continue
            if self._writer.holds(topic):
                if reason == "age":
                    deferred = True
                    continue
                self._collect(topic)
            elif self._writer.full:
                if reason == "age":  # low traffic: commit it here, beside the writer's batch
                    self.flush(topic, reason)
                    continue
                self._collect(WAIT_ANY)
            parts = self._buffers[topic].take()  # after _collect: a lost race drops records
            if parts:
                self._writer.submit(Batch(topic, parts, reason))
        return deferred

    def _collect(self, wait: str = "") -> None:
        """Take back the batches written (waiting as :meth:`BatchWriter.take` says) and act on
        each."""
        for written in self._writer.take(wait):
            self._written(written)

    def flush_all(self, reason: str) -> None:
        """Commit every buffered record now, on this thread, after the batch still out."""
        self._collect(WAIT_ALL)
        for topic in self._buffers:
            self.flush(topic, reason)

    def flush(self, topic: str, reason: str) -> None:
        """Write the topic's buffered records as one commit on this thread (no batch of the
        topic may be out); follow the table where we lost."""
        parts = self._buffers[topic].take()
        if parts:
            self._written(
                write(Batch(topic, parts, reason), self._tables[topic], self._sinks[topic])
            )

    def _written(self, written: Written) -> None:
        """A batch's commit is done: count it, follow the partitions another writer archived
        first, and commit the group's offsets (for lag tools only; the table is the truth)."""
        topic, result = written.batch.topic, written.result
        table = self._tables[topic].spec.name
        self._metrics.flushed(table, result.rows, written.rows, written.seconds, len(result.lost))
        for partition, offset in result.lost.items():
            self._follow(topic, partition, offset)
        kept = [
            TopicPartition(topic, p, o)
            for p, o in written.next_offsets.items()
            if p not in result.lost and (topic, p) in self._positions
        ]
        if kept:
            try:
                self._consumer.commit(offsets=kept, asynchronous=True)
            except KafkaException as exc:
                log.info("offset_commit_skipped", extra={"error": exc})
        log.debug(
            "archive_flush",
            extra={
                "table": table,
                "reason": written.batch.reason,
                "rows": result.rows,
                "version": result.version,
                "lost": result.lost or "",
                "ms": round(written.seconds * 1000, 1),
            },
        )

    def _follow(self, topic: str, partition: int, offset: int) -> None:
        """Another writer archived ``partition`` up to ``offset``: continue from there."""
        log.warning(
            "archive_partition_lost_race",
            extra={"topic": topic, "partition": partition, "table_offset": offset},
        )
        if (topic, partition) not in self._positions:
            return
        # Records of it consumed after the batch that lost are behind the table's offset or
        # would leave a gap: dropped, and read again from the table's offset.
        self._buffers[topic].drop(partition)
        self._positions[(topic, partition)] = offset
        self._sinks[topic].expected[partition] = offset
        try:
            self._consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:  # no longer assigned
            log.info("seek_skipped", extra={"topic": topic, "partition": partition, "error": exc})


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}/{tp.partition}" for tp in partitions]
