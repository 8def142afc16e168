"""The transactional consume-transform-produce loop (the shape of confluent-kafka's
``eos_transactions`` example).

Per batch, in one Kafka transaction: the events, snapshots, results and dead letters of every
command in the batch, plus the batch's consumed offsets (``send_offsets_to_transaction`` with the
consumer's group metadata, so a member that lost its partitions is fenced by generation).

Error handling follows the librdkafka transactional API: a retriable error repeats the same
call; an error that requires an abort aborts, rewinds the consumer to the committed offsets and
drops the batch's staged state (the in-memory store only holds committed state). A producer
that cannot abort, keeps failing, or hangs inside a call is replaced by a new one with the same
transactional.id (:mod:`processor.txn_producer`), for as long as Kafka stays away. When the
commit itself failed, its outcome is unknown until the committed offsets say whether the batch
committed after all (:mod:`processor.recovery`); only then is the staged state applied or
dropped. A fenced producer or another fatal error ends the run with a non-zero exit code, and a
restart resumes from the committed offsets. No record is ever skipped.

Rebalancing is cooperative-sticky: partitions that stay keep their in-memory state. On
assignment, each new partition's pull requests are restored from the compacted topic before any
of its commands is handled; revoked or lost partitions are forgotten. Callbacks run inside
``consume()``, which the loop calls only between transactions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from processor.handler import CommandHandler, Handled
from processor.observability import ProcessorObservability
from processor.progress import Progress
from processor.records import Outgoing
from processor.recovery import RewindStopped, Verdict, batch_verdict, rewind
from processor.reply_topics import METADATA_TIMEOUT_S, ReplyTopics
from processor.restore import RestoreError, restore_partitions
from processor.settings import ProcessorSettings
from processor.state_store import PartitionStates, StagedChanges
from processor.txn_producer import (
    RETRY_BUDGET_S,
    TXN_CALL_TIMEOUT_S,
    StopRequested,
    StuckCallError,
    TransactionalProducer,
    kafka_error,
)
from processor.watchdog import ConsumerWatchdog

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1

IDLE_POLL_S = 0.1  # bounds how long a stop request waits for the loop
# After this many aborts in a row the transactional producer is replaced (see _recover).
ABORTS_BEFORE_RESET = 2


class FatalProcessorError(Exception):
    """The processor cannot go on; the run ends with a non-zero exit code."""


@dataclass
class Batch:
    """One transaction's work: staged state, end offset per partition, what each command did."""

    staged: StagedChanges
    records: int
    started: float = field(default_factory=time.monotonic)
    offsets: dict[int, int] = field(default_factory=dict)
    done: list[Handled] = field(default_factory=list)


class Processor:
    """One member of the processor group. ``run()`` until ``stop`` is set or a fatal error.

    ``fault`` is a test hook: it is called with a step name (``"before_send_offsets"``,
    ``"before_commit"``) inside every transaction and may raise to simulate a Kafka error.
    ``observability`` (metrics, spans) defaults to what ``settings`` configure.
    """

    def __init__(
        self,
        settings: ProcessorSettings,
        *,
        stop: threading.Event | None = None,
        fault: Callable[[str], None] | None = None,
        observability: ProcessorObservability | None = None,
    ) -> None:
        self._settings = settings
        self._topics = settings.topics
        self._instance_id = settings.resolved_instance_id
        self._stop = stop or threading.Event()
        self._fault = fault or (lambda step: None)
        self._states = PartitionStates()
        self._observe = observability or ProcessorObservability.from_settings(settings)
        self._handler = CommandHandler(
            self._topics,
            settings.policy(),
            reply_topic=ReplyTopics(self._topics, self._list_topics),
            tracing=self._observe.tracing,
        )
        self._fatal: str | None = None
        self._in_transaction = False
        self._progress = Progress(self._states)
        self._counts = self._progress.counts
        self._consumer: Consumer | None = None
        self._restorer: Consumer | None = None
        self._aborts_in_a_row = 0
        self._watchdog = ConsumerWatchdog()
        self._txn = TransactionalProducer(
            settings, self._instance_id, on_error=self._on_error, stop=self._stop
        )

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Process until stopped (exit 0) or a fatal error (exit 1). Always closes the clients."""
        settings = self._settings
        log.info(
            "event=processor_starting instance_id=%s transactional_id=%s group_id=%s topic=%s",
            self._instance_id,
            settings.transactional_id(self._instance_id),
            settings.group_id,
            self._topics.commands,
        )
        try:
            # Fences an earlier incarnation with the same transactional.id and aborts its open
            # transaction, before we read anything it may have left pending.
            self._txn.start()
            self._restorer = Consumer(settings.restore_config())
            # Connect and learn the partition leaders now, not inside the first assignment.
            self._restorer.list_topics(self._topics.pull_requests, METADATA_TIMEOUT_S)
            self._consumer = self._new_consumer()
            log.info("event=processor_started instance_id=%s", self._instance_id)
            self._observe.start()
            while not self._stop.is_set():
                batch = self._next_batch()
                self._check_fatal()
                if batch:
                    self._watchdog.delivered()
                    self._process(batch)
                elif (wedged := self._watchdog.idle(self._group_consumer)) is not None:
                    self._replace_consumer(wedged)
                self._txn.producer.poll(0)
                self._progress.maybe_log()
                self._observe.tick(self._group_consumer, self._states)
            log.info("event=processor_stopping reason=stop_requested")
            return EXIT_OK
        except (StopRequested, RewindStopped) as exc:
            # Stopped while Kafka was away: nothing was committed past the committed offsets,
            # the next start redoes the batch in hand.
            log.info("event=processor_stopping reason=stop_requested during=%r", exc)
            return EXIT_OK
        except (FatalProcessorError, KafkaException) as exc:
            log.error("event=processor_failed instance_id=%s error=%r", self._instance_id, exc)
            return EXIT_FATAL
        except Exception:
            log.exception("event=processor_crashed instance_id=%s", self._instance_id)
            return EXIT_FATAL
        finally:
            self._close()

    def _new_consumer(self) -> Consumer:
        consumer = Consumer(
            self._settings.consumer_config(self._instance_id) | {"error_cb": self._on_error}
        )
        consumer.subscribe(
            [self._topics.commands],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        return consumer

    def _replace_consumer(self, reason: str) -> None:
        """A new group consumer for one that stopped delivering (:mod:`processor.watchdog`).

        Between batches nothing is staged, so the partitions are simply given up and restored
        again on the new consumer's assignment; callbacks of the old one are ignored.
        """
        log.warning("event=consumer_replacing reason=%r", reason)
        old, self._consumer = self._consumer, None
        self._states.drop(self._states.partitions())
        if old is not None:
            self._watchdog.retire(old)
        self._consumer = self._new_consumer()
        log.info("event=consumer_replaced")

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()  # leaves the group: our partitions move at once
            except (KafkaException, RuntimeError) as exc:
                log.warning("event=consumer_close_failed error=%r", exc)
        if self._restorer is not None:
            try:
                self._restorer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("event=restore_consumer_close_failed error=%r", exc)
        # A transaction is open here only after a fatal error: give the batch back (bounded),
        # a restart redoes it.
        self._txn.close(in_transaction=self._in_transaction)
        self._in_transaction = False
        self._progress.log("processor_stopped")
        self._observe.stopped()

    @property
    def _txn_producer(self) -> Producer:
        return self._txn.producer

    @property
    def _group_consumer(self) -> Consumer:
        assert self._consumer is not None
        return self._consumer

    def _list_topics(self, topic: str, timeout: float) -> Any:
        # The consumer exists only once run() started; metadata from it never auto-creates.
        return self._group_consumer.list_topics(topic, timeout)

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise FatalProcessorError(self._fatal)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = f"fatal Kafka error: {error}"
            log.error("event=kafka_fatal_error error=%s", error)
        else:
            log.warning("event=kafka_error error=%s", error)

    # -- one batch ---------------------------------------------------------------------------

    def _next_batch(self) -> list[Message]:
        """Wait (bounded) for a first command, then take what arrives within the batch wait."""
        consumer = self._group_consumer
        batch = consumer.consume(1, IDLE_POLL_S)
        if batch and self._settings.batch_max_records > 1:
            batch.extend(
                consumer.consume(
                    self._settings.batch_max_records - 1,
                    self._settings.batch_max_wait_ms / 1000,
                )
            )
        return batch

    def _process(self, messages: list[Message]) -> None:
        mine: list[Message] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise FatalProcessorError(f"consumer error: {error}")
                log.warning("event=consumer_error error=%s", error)
            elif self._states.owns(message.partition() or 0):
                mine.append(message)
            else:
                # Fetched before its partition moved; the new owner starts at the committed
                # offset, which we do not advance for it.
                log.warning(
                    "event=record_of_unowned_partition partition=%s offset=%s",
                    message.partition(),
                    message.offset(),
                )
        if not mine:
            return
        producer = self._txn_producer
        batch = Batch(self._states.begin(), len(mine))
        committing = False  # from the commit on, a failure leaves the outcome unknown
        try:
            producer.begin_transaction()
            self._in_transaction = True
            for message in mine:
                handled = self._handler.handle(message, batch.staged)
                for record in handled.outgoing:
                    self._produce(record)
                batch.offsets[message.partition() or 0] = (message.offset() or 0) + 1
                batch.done.append(handled)
            positions = [
                TopicPartition(self._topics.commands, partition, offset)
                for partition, offset in batch.offsets.items()
            ]
            self._fault("before_send_offsets")
            group_metadata = self._group_consumer.consumer_group_metadata()
            self._txn.call(
                "send_offsets_to_transaction",
                lambda: producer.send_offsets_to_transaction(
                    positions, group_metadata, TXN_CALL_TIMEOUT_S
                ),
            )
            committing = True
            self._fault("before_commit")
            self._txn.call(
                "commit_transaction", lambda: producer.commit_transaction(TXN_CALL_TIMEOUT_S)
            )
        except KafkaException as exc:
            self._settle(batch, str(exc), self._recover(exc), committing)
            return
        except StuckCallError as exc:
            # The producer is wedged inside librdkafka: leave it behind, start a new one.
            self._replace_producer(str(exc), wedged=True)
            self._in_transaction = False
            self._settle(batch, str(exc), rewind(self._group_consumer, self._stop), committing)
            return
        self._in_transaction = False
        self._aborts_in_a_row = 0
        self._committed(batch)

    def _committed(self, batch: Batch) -> None:
        state_changes = len(batch.staged)
        batch.staged.apply()
        self._observe.committed(batch.done, batch.started)
        self._counts["batches"] += 1
        for handled in batch.done:
            self._counts[handled.outcome.value] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "event=batch_committed records=%d partitions=%s state_changes=%d ms=%.1f",
                batch.records,
                ",".join(str(p) for p in sorted(batch.offsets)),
                state_changes,
                (time.monotonic() - batch.started) * 1000,
            )

    def _settle(
        self, batch: Batch, error: str, committed: dict[int, int], committing: bool
    ) -> None:
        """After a failed transaction (resolved, the consumer rewound to ``committed``): keep
        the batch's state if it committed after all, else drop it; never guess."""
        verdict, unsure = Verdict.ABORTED, list[int]()
        if committing:
            verdict, unsure = batch_verdict(batch.offsets, committed)
        rewound = ",".join(f"{p}@{o}" for p, o in sorted(committed.items()))
        if verdict is Verdict.COMMITTED:
            log.warning("event=transaction_committed_despite_error error=%r at=%s", error, rewound)
            self._committed(batch)
            return
        self._counts["aborts"] += 1
        self._observe.aborted(batch.done, error)
        log.info("event=transaction_aborted rewound=%s", rewound)
        if verdict is Verdict.MIXED:
            # One transaction commits whole; if the offsets disagree, believe Kafka's snapshots.
            log.error("event=commit_outcome_mixed batch=%s committed=%s", batch.offsets, rewound)
            try:
                self._restore(unsure, self._settings.restore_timeout_ms / 1000)
            except (KafkaException, RestoreError) as exc:
                raise FatalProcessorError(f"restoring partitions {unsure} failed: {exc}") from exc

    def _restore(self, partitions: list[int], timeout_s: float) -> None:
        """Install the compacted topic's pull requests of ``partitions``."""
        assert self._restorer is not None
        topic = self._topics.pull_requests
        restored = restore_partitions(self._restorer, topic, partitions, timeout_s)
        for partition, states in restored.items():
            self._states.put_partition(partition, states)

    def _produce(self, record: Outgoing) -> None:
        deadline = time.monotonic() + RETRY_BUDGET_S
        while True:
            try:
                self._txn_producer.produce(
                    record.topic, value=record.value, key=record.key, headers=record.headers
                )
                return
            except BufferError:
                # The local queue is full: serve it and try again, for a bounded time.
                if time.monotonic() > deadline:
                    raise FatalProcessorError("producer queue stayed full") from None
                self._txn_producer.poll(0.05)

    def _recover(self, exc: KafkaException) -> dict[int, int]:
        """Resolve the failed transaction and rewind; returns the committed offsets.

        An abortable error aborts and rewinds. When aborting fails, or the same producer keeps
        failing (for example after a broker outage outlived the transaction, where librdkafka
        can stay stuck acquiring a new producer epoch), the producer is replaced by a new one
        with the same transactional.id: its init_transactions aborts whatever the old one left
        open, and the consumer rewinds to the committed offsets. A fenced or otherwise fatal
        producer still ends the run: another instance owns our transactional.id.
        """
        error = kafka_error(exc)
        if error is None or error.fatal() or self._fatal is not None:
            raise FatalProcessorError(f"transaction failed: {exc}") from exc
        self._aborts_in_a_row += 1
        log.warning("event=transaction_aborting error=%s in_a_row=%d", error, self._aborts_in_a_row)
        reset = self._aborts_in_a_row >= ABORTS_BEFORE_RESET or not error.txn_requires_abort()
        if not reset:
            # One bounded attempt: a producer whose abort fails is the wedged kind, and
            # replacing it is faster than waiting for it.
            reset = not self._txn.abort()
        if reset:
            self._replace_producer(str(error))
        self._in_transaction = False
        return rewind(self._group_consumer, self._stop)

    def _replace_producer(self, reason: str, *, wedged: bool = False) -> None:
        try:
            self._txn.replace(reason, wedged=wedged)
        except KafkaException as exc:
            raise FatalProcessorError(f"replacing the producer failed: {exc}") from exc
        self._aborts_in_a_row = 0

    # -- rebalancing -------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions or self._fatal is not None or consumer is not self._consumer:
            return
        numbers = sorted(tp.partition for tp in partitions)
        log.info("event=partitions_assigned partitions=%s", ",".join(map(str, numbers)))
        timeout_s = self._settings.restore_timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        try:
            # Under read_committed this waits until a predecessor's pending transactional
            # offsets are resolved: only then do the snapshots we read match those offsets.
            self._observe.assigned(consumer.committed(partitions, timeout=timeout_s))
            self._restore(numbers, max(1.0, deadline - time.monotonic()))
        except (KafkaException, RestoreError) as exc:
            # Raising here would leave librdkafka's assignment half-done; stop the loop instead.
            self._fatal = f"restoring partitions {numbers} failed: {exc}"
            log.error("event=restore_failed partitions=%s error=%s", numbers, exc)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a replaced consumer closing
        numbers = sorted(tp.partition for tp in partitions)
        self._states.drop(numbers)
        if numbers:
            log.info("event=partitions_revoked partitions=%s", ",".join(map(str, numbers)))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        numbers = sorted(tp.partition for tp in partitions)
        self._states.drop(numbers)
        log.warning("event=partitions_lost partitions=%s", ",".join(map(str, numbers)))
