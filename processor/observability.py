"""What the processor tells its operators besides its logs: Prometheus metrics and spans.

The loop calls a few hooks: :meth:`ProcessorObservability.committed` and
:meth:`~ProcessorObservability.aborted` once per transaction, :meth:`~ProcessorObservability.tick`
once per loop turn, :meth:`~ProcessorObservability.assigned` on assignment,
:meth:`~ProcessorObservability.stopped` at the end. Per command that is a dict lookup and an
add; with metrics and tracing off, the hooks return at once.

Gauges that Prometheus reads at scrape time (consumer lag, pull requests held, assigned
partitions) come from values the loop thread refreshes in :meth:`tick` at most every
``REFRESH_S``: the consumer and the state store belong to that thread, and a scrape must never
wait for the broker. The lag is librdkafka's cached high watermark (updated by every fetch
response, no request of its own) minus the consumer's position.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import Consumer, TopicPartition

from prgate.domain.commands import COMMAND_TYPES
from prgate.observability import metrics as prgate_metrics
from prgate.observability import tracing as prgate_tracing
from prgate.observability.metrics import ProcessorMetrics
from prgate.observability.tracing import Tracing
from processor.handler import Handled, Outcome
from processor.record_limits import RECORD_ERRORS
from processor.reply_topics import REASONS as REPLY_REFUSALS
from processor.settings import ProcessorSettings
from processor.state_store import PartitionStates

# Only the per-command outcome lines use this module's logger, so they can be turned down
# (the level of "processor.observability") without the rest.
outcome_log = logging.getLogger(__name__)

REFRESH_S = 1.0
DEAD_LETTERED = (Outcome.DEAD_LETTER, Outcome.FAILED)  # each wrote one DLQ record


class ProcessorObservability:
    """Metrics (``metrics``) and spans (``tracing``) of one processor; either may be None."""

    def __init__(
        self,
        metrics: ProcessorMetrics | None = None,
        tracing: Tracing | None = None,
        *,
        metrics_listen: str = "",
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self._metrics_listen = metrics_listen
        self._server: object | None = None
        self._last_refresh = 0.0
        # Read by the scrape thread; replaced whole, never mutated.
        self._lag: dict[str, float] = {}
        self._start: dict[int, int] = {}  # committed offset at assignment, by partition
        self._pull_requests = 0
        self._assigned = 0
        if metrics is not None:
            gauges = metrics.callbacks
            gauges.labelled(
                "prgate_processor_consumer_lag",
                "Commands not yet consumed per assigned partition (cached high watermark minus"
                " position; refreshed about every second)",
                "partition",
                lambda: self._lag,
            )
            gauges.gauge(
                "prgate_processor_pull_requests",
                "Pull requests held in memory (committed state of the assigned partitions)",
                lambda: self._pull_requests,
            )
            gauges.gauge(
                "prgate_processor_assigned_partitions",
                "Command partitions assigned to this processor and restored",
                lambda: self._assigned,
            )

    def state_stores(self, read: Callable[[], Mapping[str, float]]) -> None:
        """Export the state stores' memory bounds and use (``read`` at scrape time)."""
        if self.metrics is not None:
            self.metrics.callbacks.labelled(
                "prgate_processor_state",
                "RocksDB state stores: memory bounds and use (bytes), entry cache capacity",
                "kind",
                read,
            )

    @classmethod
    def from_settings(cls, settings: ProcessorSettings) -> ProcessorObservability:
        """As configured: metrics when ``metrics_listen`` is set, tracing unless ``off``.

        Raises :class:`prgate.observability.tracing.TracingError` when tracing cannot be set up.
        """
        tracing = prgate_tracing.setup(settings.tracing, "prgate-processor")
        metrics = (
            ProcessorMetrics(
                command_types=COMMAND_TYPES.values(),
                reply_refusals=REPLY_REFUSALS,
                record_errors=RECORD_ERRORS,
            )
            if settings.metrics_listen
            else None
        )
        return cls(metrics, tracing, metrics_listen=settings.metrics_listen)

    def start(self) -> None:
        """Serve ``/metrics`` when configured."""
        if self.metrics is not None and self._metrics_listen and self._server is None:
            self._server = prgate_metrics.serve(self._metrics_listen, self.metrics.registry)

    # -- per transaction ----------------------------------------------------------------------

    def committed(self, handled: Sequence[Handled], started: float) -> None:
        """A batch's transaction committed (``started``: time.monotonic() at its start)."""
        if self.tracing is not None:
            for one in handled:
                if one.span is not None:
                    one.span.end()
        if outcome_log.isEnabledFor(logging.INFO):
            # One line per command outcome, once it is final (its transaction committed).
            for one in handled:
                outcome_log.info(
                    "command_outcome",
                    extra={
                        "command": one.command_type,
                        "outcome": one.outcome.value,
                        "command_id": one.command_id,
                        "pull_request_id": one.pull_request_id,
                        "events": one.events,
                        **(
                            dict(zip(("trace_id", "span_id"), one.span.ids, strict=True))
                            if one.span is not None
                            else {}
                        ),
                    },
                )
        metrics = self.metrics
        if metrics is None:
            return
        dead = 0
        for one in handled:
            metrics.command(one.command_type or "unknown", one.outcome.value).inc()
            if one.outcome in DEAD_LETTERED:
                dead += 1
            if one.reply_refused:
                metrics.reply_refused.labels(one.reply_refused).inc()
            if one.record_error:
                metrics.records_refused.labels(one.record_error).inc()
        metrics.committed.inc()
        metrics.batch_records.observe(len(handled))
        metrics.transaction_seconds.observe(time.monotonic() - started)
        if dead:
            metrics.dlq_records.inc(dead)

    def aborted(self, handled: Sequence[Handled], error: str) -> None:
        """A batch's transaction aborted or failed: nothing of it counts; spans end in error."""
        if self.metrics is not None:
            self.metrics.aborted.inc()
        for one in handled:
            if one.span is not None:
                one.span.set(**{"transaction": "aborted"})
                one.span.error(f"transaction aborted: {error}")
                one.span.end()

    def assigned(self, committed: Sequence[TopicPartition]) -> None:
        """Partitions were assigned; ``committed``: their committed offsets (the lag's base
        until the first record of a partition is consumed)."""
        for tp in committed:
            self._start[tp.partition] = tp.offset

    # -- per loop turn ------------------------------------------------------------------------

    def tick(self, consumer: Consumer, states: PartitionStates) -> None:
        """Between batches: refresh the scrape-time gauges (at most every REFRESH_S)."""
        if self.metrics is not None and time.monotonic() - self._last_refresh >= REFRESH_S:
            self._last_refresh = time.monotonic()
            self._refresh(consumer, states)

    def _refresh(self, consumer: Consumer, states: PartitionStates) -> None:
        self._pull_requests = states.count()
        self._assigned = len(states.partitions())
        lag: dict[str, float] = {}
        assignment: list[TopicPartition] = consumer.assignment()
        if assignment:
            for tp in consumer.position(assignment):
                watermarks = consumer.get_watermark_offsets(tp, cached=True)
                high = watermarks[1] if watermarks else -1
                if high < 0:
                    continue  # nothing fetched from this partition yet
                # No position before the first consumed record: count from where consuming
                # starts (the committed offset, else the log start: auto.offset.reset).
                position = tp.offset
                if position < 0:
                    position = self._start.get(tp.partition, -1)
                if position < 0:
                    position = max(0, watermarks[0])
                lag[str(tp.partition)] = float(max(0, high - position))
        self._lag = lag

    def stopped(self) -> None:
        """The loop ended: stop serving metrics, flush the spans."""
        prgate_metrics.close(self._server)
        self._server = None
        if self.tracing is not None:
            self.tracing.shutdown()
