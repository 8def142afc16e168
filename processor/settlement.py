"""How the transaction loop settles a batch: committed, aborted, or resolved after a failure.

:class:`BatchSettlement` holds the part of :class:`processor.loop.Processor` that runs after a
transaction ends: applying a committed batch's staged state, deciding from the committed
offsets whether a failed commit committed after all (:mod:`processor.recovery`), aborting and
rewinding, redoing a batch whose records Kafka refused (:mod:`processor.record_failures`), and
replacing a producer that cannot abort, keeps failing or hangs
(:mod:`processor.txn_producer`). It is a mixin: the attributes it declares are set by
``Processor.__init__``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Producer

from processor.handler import Handled
from processor.membership import GroupMember
from processor.observability import ProcessorObservability
from processor.record_failures import RecordFailures, RecordsRefused, Refusal, Source
from processor.recovery import Verdict, batch_verdict, rewind
from processor.restore import RestoreError
from processor.settings import ProcessorSettings
from processor.state_store import StagedChanges
from processor.txn_producer import TransactionalProducer, kafka_error

log = logging.getLogger(__name__)

# After this many aborts in a row the transactional producer is replaced (see _recover).
ABORTS_BEFORE_RESET = 2
# How librdkafka reports a producer whose epoch was bumped under it (see _recover).
_FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


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
    sources: list[Source] = field(default_factory=list)  # of done, in order


class BatchSettlement:
    """The settling of a batch's transaction, mixed into :class:`processor.loop.Processor`."""

    _settings: ProcessorSettings
    _stop: threading.Event
    _observe: ProcessorObservability
    _fatal: str | None
    _fatal_error: KafkaError | None
    member: GroupMember
    _failures: RecordFailures
    _in_transaction: bool
    _counts: dict[str, int]
    _aborts_in_a_row: int
    _txn: TransactionalProducer

    @property
    def _txn_producer(self) -> Producer:
        return self._txn.producer

    def _committed(self, batch: Batch) -> None:
        state_changes = len(batch.staged)
        if self._settings.state_path is not None:
            self._txn.producer.poll(0)  # serve the snapshots' delivery reports still queued
        # The committed states, each partition's with its checkpoint, in one write: a store is
        # never ahead of the committed log.
        batch.staged.apply(self._txn.take_positions(), batch.offsets)
        self._failures.committed(batch.offsets)
        self._observe.committed(batch.done, batch.started)
        self._counts["batches"] += 1
        for handled in batch.done:
            self._counts[handled.outcome.value] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "batch_committed",
                extra={
                    "records": batch.records,
                    "partitions": ",".join(str(p) for p in sorted(batch.offsets)),
                    "state_changes": state_changes,
                    "ms": round((time.monotonic() - batch.started) * 1000, 1),
                },
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
            log.warning(
                "transaction_committed_despite_error", extra={"error": error, "at": rewound}
            )
            self._committed(batch)
            return
        self._counts["aborts"] += 1
        self._observe.aborted(batch.done, error)
        log.info("transaction_aborted", extra={"rewound": rewound})
        if verdict is Verdict.MIXED:
            # One transaction commits whole; if the offsets disagree, believe Kafka's snapshots.
            log.error("commit_outcome_mixed", extra={"batch": batch.offsets, "committed": rewound})
            try:
                self.member.restore(unsure, self._settings.restore_timeout_ms / 1000)
            except (KafkaException, RestoreError) as exc:
                raise FatalProcessorError(f"restoring partitions {unsure} failed: {exc}") from exc

    def _refused_deliveries(self, batch: Batch) -> list[Refusal]:
        """The records of ``batch`` whose delivery failed with an error of their own."""
        self._txn_producer.poll(0)  # serve the delivery reports still queued
        sent = [
            (source, handled.outgoing)
            for source, handled in zip(batch.sources, batch.done, strict=True)
        ]
        return self._failures.refusals(self._txn.take_failed_deliveries(), sent)

    def _records_refused(self, batch: Batch, refused: RecordsRefused, committing: bool) -> None:
        """Abort the transaction that ``refused`` records broke and mark their commands, so
        the redone batch commits; refusals nothing can be changed for recover as usual."""
        changes = self._failures.mark(refused.refusals)
        if not changes or self._fatal is not None:
            first = refused.refusals[0].error
            self._settle(
                batch,
                str(refused),
                self._recover(KafkaException(first), batch.started),
                committing,
            )
            return
        self._counts["record_aborts"] += 1
        for change in changes:
            log.warning("record_refused", extra={"change": change})
        if refused.delivered or self._failures.batch_size != self._txn.config.get("batch.size"):
            # A record refused after it was sent leaves a gap in the idempotent producer's
            # sequence numbers, which fails the next transaction (OUT_OF_ORDER_SEQUENCE_NUMBER)
            # unless a new producer epoch starts now; and only a new producer builds smaller
            # batches. The replacement's init_transactions aborts this transaction.
            self._txn.configure(**{"batch.size": self._failures.batch_size})
            self._replace_producer(str(refused))
        elif not self._txn.abort():
            self._replace_producer(str(refused))
        self._in_transaction = False
        self._settle(
            batch,
            str(refused),
            rewind(self.member.consumer, self._stop, self.member.fresh_committed),
            committing,
        )

    def _recover(self, exc: KafkaException, began: float) -> dict[int, int]:
        """Resolve the failed transaction (begun at ``began``, ``time.monotonic()``) and
        rewind; returns the committed offsets.

        An abortable error aborts and rewinds. When aborting fails, or the same producer keeps
        failing (for example after a broker outage outlived the transaction, where librdkafka
        can stay stuck acquiring a new producer epoch), the producer is replaced by a new one
        with the same transactional.id: its init_transactions aborts whatever the old one left
        open, and the consumer rewinds to the committed offsets.

        A fenced producer ends the run (another instance owns our transactional.id), unless
        the transaction had been open for ``transaction.timeout.ms`` or longer: then the
        fencing is the transaction coordinator's own doing. It aborts a transaction that
        outlived its timeout and bumps the producer epoch, which the producer can only report
        as fenced (seen when the coordinator was SIGKILLed mid-commit: the new coordinator
        took over a transaction already past its timeout). No other instance is involved, so
        the producer is replaced like a wedged one. A younger transaction cannot have timed
        out (the coordinator's clock starts after ours), so its fencing is real.
        """
        error = kafka_error(exc)
        if error is not None and self._timed_out(error, began):
            log.warning(
                "transaction_timed_out",
                extra={
                    "error": error,
                    "age_ms": round((time.monotonic() - began) * 1000),
                    "transaction_timeout_ms": self._settings.transaction_timeout_ms,
                },
            )
            self._fatal, self._fatal_error = None, None
            self._replace_producer(str(error))
            self._in_transaction = False
            return rewind(self.member.consumer, self._stop, self.member.fresh_committed)
        if error is None or error.fatal() or self._fatal is not None:
            raise FatalProcessorError(f"transaction failed: {exc}") from exc
        self._aborts_in_a_row += 1
        log.warning(
            "transaction_aborting", extra={"error": error, "in_a_row": self._aborts_in_a_row}
        )
        reset = self._aborts_in_a_row >= ABORTS_BEFORE_RESET or not error.txn_requires_abort()
        if not reset:
            # One bounded attempt: a producer whose abort fails is the wedged kind, and
            # replacing it is faster than waiting for it.
            reset = not self._txn.abort()
        if reset:
            self._replace_producer(str(error))
        self._in_transaction = False
        return rewind(self.member.consumer, self._stop, self.member.fresh_committed)

    def _timed_out(self, error: KafkaError, began: float) -> bool:
        """Whether ``error`` is the fencing of a transaction the coordinator timed out: the
        producer fenced, the transaction open for at least ``transaction.timeout.ms``, and any
        fatal error recorded meanwhile that same fencing."""
        fenced = error.code() in _FENCED_CODES
        old = (time.monotonic() - began) * 1000 >= self._settings.transaction_timeout_ms
        recorded = self._fatal is None or (
            self._fatal_error is not None and self._fatal_error.code() in _FENCED_CODES
        )
        return fenced and old and recorded

    def _replace_producer(self, reason: str, *, wedged: bool = False) -> None:
        try:
            self._txn.replace(reason, wedged=wedged)
        except KafkaException as exc:
            raise FatalProcessorError(f"replacing the producer failed: {exc}") from exc
        self._aborts_in_a_row = 0
