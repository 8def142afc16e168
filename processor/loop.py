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

A record Kafka refuses for itself (too large, a reply topic it may not write) is not Kafka
being away: retrying would fail forever. Records are checked against the topics' size limits
before they are produced (:mod:`processor.record_limits`); one refused all the same aborts the
transaction once, and the batch is redone with its command answered FAILED
(:mod:`processor.record_failures`).

The consumer-group side (the group consumer, rebalancing, restoring assigned partitions,
replacing a wedged consumer) is :mod:`processor.membership`; its callbacks run inside
``consume()``, which the loop calls only between transactions. What happens once a batch's
transaction ends (committed, aborted, resolved, the producer replaced) is
:mod:`processor.settlement`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from prgate.kafka.codec import Record
from prgate.observability import logs
from processor.handler import CommandHandler
from processor.membership import GroupMember
from processor.observability import ProcessorObservability
from processor.progress import Progress
from processor.record_failures import RecordFailures, RecordsRefused, Source
from processor.recovery import RewindStopped, rewind
from processor.settings import ProcessorSettings
from processor.settlement import Batch, BatchSettlement, FatalProcessorError
from processor.txn_producer import (
    RETRY_BUDGET_S,
    TXN_CALL_TIMEOUT_S,
    StopRequested,
    StuckCallError,
    TransactionalProducer,
)

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1

# Bound of reading the output topics' size limits and the results topic's partitions at start.
LIMITS_TIMEOUT_S = 10.0
PARTITION_BY_KEY = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner decides


class Processor(BatchSettlement):
    """One member of the processor group. ``run()`` until ``stop`` is set or a fatal error.

    ``fault`` is a test hook: it is called with a step name (``"before_send_offsets"``,
    ``"before_commit"``) inside every transaction and may raise to simulate a Kafka error.
    ``observability`` (metrics, spans) defaults to what ``settings`` configure. ``member`` is
    its consumer-group side.
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
        self._repeats = logs.Repeats()  # of kafka_error lines
        self._topics = settings.topics
        self._instance_id = settings.resolved_instance_id
        self._stop = stop or threading.Event()
        self._fault = fault or (lambda step: None)
        self._observe = observability or ProcessorObservability.from_settings(settings)
        self._fatal: str | None = None
        # The fatal error behind ``_fatal`` when it came from a Kafka client's error_cb.
        self._fatal_error: KafkaError | None = None
        self.member = GroupMember(
            settings,
            self._instance_id,
            self._observe,
            on_error=self._on_error,
            fail=self._fail,
            failed=lambda: self._fatal is not None,
        )
        self._states = self.member.states
        resources = self.member.store_resources
        if resources is not None:
            entries = settings.state_cache_entries
            self._observe.state_stores(lambda: resources.stats(entries))
        # Where results may go, how large records may be, and the commands to answer FAILED.
        self._failures = RecordFailures.of(settings, self._instance_id, self.member.list_topics)
        self._handler = CommandHandler(
            self._topics,
            settings.policy(),
            reply_topic=self._failures.reply_topics.resolve,
            tracing=self._observe.tracing,
            limits=self._failures.limits,
        )
        self._in_transaction = False
        # Results of the default topic go to the partition number of their command (modulo the
        # results topic's count): a batch's transaction then touches the same partition numbers
        # on every output topic instead of one results partition per command id. 0: unknown,
        # results go where their key (the command id) hashes.
        self._results_partitions = 0
        self._progress = Progress(self._states)
        self._counts = self._progress.counts
        self._aborts_in_a_row = 0
        self._txn = TransactionalProducer(
            settings, self._instance_id, on_error=self._on_error, stop=self._stop
        )

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the counters: commands by outcome, ``batches`` committed, ``aborts`` (all
        aborted transactions) and ``record_aborts`` (those a refused record caused)."""
        return dict(self._counts)

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Process until stopped (exit 0) or a fatal error (exit 1). Always closes the clients."""
        settings = self._settings
        log.info(
            "processor_starting",
            extra={
                "instance_id": self._instance_id,
                "transactional_id": settings.transactional_id(self._instance_id),
                "group_id": settings.group_id,
                "topic": self._topics.commands,
            },
        )
        try:
            self._failures.read_limits(settings, LIMITS_TIMEOUT_S)
            self._txn.configure(**{"batch.size": self._failures.batch_size})
            # Fences an earlier incarnation with the same transactional.id and aborts its open
            # transaction, before we read anything it may have left pending.
            self._txn.start()
            self.member.start()
            self._results_partitions = self._count_partitions(self._topics.results)
            log.info("processor_started", extra={"instance_id": self._instance_id})
            self._observe.start()
            while not self._stop.is_set():
                batch = self.member.next_batch()
                self._check_fatal()
                if batch:
                    self.member.delivered()
                    self._process(batch)
                else:
                    self.member.idle()
                self._txn.producer.poll(0)
                self._progress.maybe_log()
                self._observe.tick(self.member.consumer, self._states)
            log.info("processor_stopping", extra={"reason": "stop_requested"})
            return EXIT_OK
        except (StopRequested, RewindStopped) as exc:
            # Stopped while Kafka was away: nothing was committed past the committed offsets,
            # the next start redoes the batch in hand.
            log.info("processor_stopping", extra={"reason": "stop_requested", "during": exc})
            return EXIT_OK
        except (FatalProcessorError, KafkaException) as exc:
            log.error("processor_failed", extra={"instance_id": self._instance_id, "error": exc})
            return EXIT_FATAL
        except Exception:
            log.exception("processor_crashed", extra={"instance_id": self._instance_id})
            return EXIT_FATAL
        finally:
            self._close()

    def _close(self) -> None:
        self.member.close()
        # A transaction is open here only after a fatal error: give the batch back (bounded),
        # a restart redoes it.
        self._txn.close(in_transaction=self._in_transaction)
        self._in_transaction = False
        self._progress.log("processor_stopped")
        self._observe.stopped()

    def _count_partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has; 0 (logged) when its metadata cannot be read."""
        try:
            found = self.member.list_topics(topic, LIMITS_TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            log.warning("topic_metadata_unknown", extra={"topic": topic, "error": exc})
            return 0
        if found is None or found.error is not None:
            error = "no such topic" if found is None else found.error
            log.warning("topic_metadata_unknown", extra={"topic": topic, "error": error})
            return 0
        return len(found.partitions)

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise FatalProcessorError(self._fatal)

    def _fail(self, reason: str) -> None:
        self._fatal = reason

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = f"fatal Kafka error: {error}"
            self._fatal_error = error
            log.error("kafka_fatal_error", extra={"error": error})
        else:  # repeats for as long as the broker is away: bounded
            logs.log_repeating(
                log, self._repeats, logging.WARNING, "kafka_error",
                {"code": error.name(), "error": error.str()},
                error.name(), logs.masked(error.str()),
            )  # fmt: skip

    # -- one batch ---------------------------------------------------------------------------

    def _process(self, messages: list[Message]) -> None:
        mine: list[Message] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise FatalProcessorError(f"consumer error: {error}")
                log.warning("consumer_error", extra={"error": error})
            elif self._states.owns(message.partition() or 0):
                mine.append(message)
            else:
                # Fetched before its partition moved; the new owner starts at the committed
                # offset, which we do not advance for it.
                log.warning(
                    "record_of_unowned_partition",
                    extra={"partition": message.partition(), "offset": message.offset()},
                )
        if not mine:
            return
        producer = self._txn_producer
        batch = Batch(self._states.begin(), len(mine))
        committing = False  # from the commit on, a failure leaves the outcome unknown
        try:
            producer.begin_transaction()
            self._in_transaction = True
            self._txn.take_failed_deliveries()  # an earlier transaction's, settled already
            self._txn.take_positions()  # an earlier (aborted) transaction's
            for message in mine:
                source = (message.partition() or 0, message.offset() or 0)
                handled = self._handler.handle(message, batch.staged, self._failures.get(source))
                batch.done.append(handled)
                batch.sources.append(source)
                for record in handled.outgoing:
                    self._produce(record, source)
                batch.offsets[source[0]] = source[1] + 1
            positions = [
                TopicPartition(self._topics.commands, partition, offset)
                for partition, offset in batch.offsets.items()
            ]
            self._fault("before_send_offsets")
            group_metadata = self.member.consumer.consumer_group_metadata()
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
        except RecordsRefused as exc:
            self._records_refused(batch, exc, committing)
            return
        except KafkaException as exc:
            refused = self._refused_deliveries(batch)
            if refused:
                # A refused record made the transaction fail (abortable), not Kafka.
                self._records_refused(batch, RecordsRefused(refused, delivered=True), committing)
                return
            self._settle(batch, str(exc), self._recover(exc, batch.started), committing)
            return
        except StuckCallError as exc:
            # The producer is wedged inside librdkafka: leave it behind, start a new one.
            self._replace_producer(str(exc), wedged=True)
            self._in_transaction = False
            self._settle(
                batch,
                str(exc),
                rewind(self.member.consumer, self._stop, self.member.fresh_committed),
                committing,
            )
            return
        self._in_transaction = False
        self._aborts_in_a_row = 0
        self._committed(batch)

    def _produce(self, record: Record, source: Source) -> None:
        self._failures.check(record, source)
        deadline = time.monotonic() + RETRY_BUDGET_S
        partition = PARTITION_BY_KEY
        if record.topic == self._topics.results and self._results_partitions:
            partition = source[0] % self._results_partitions
        while True:
            try:
                self._txn_producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    partition=partition,
                )
                return
            except KafkaException as exc:
                # produce() refuses some records at once (over message.max.bytes, say).
                refused = self._failures.refused_at_once(exc, record, source)
                if refused is None:
                    raise
                raise refused from exc
            except BufferError:
                # The local queue is full: serve it and try again, for a bounded time.
                if time.monotonic() > deadline:
                    raise FatalProcessorError("producer queue stayed full") from None
                self._txn_producer.poll(0.05)
