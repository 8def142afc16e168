"""The refusals admission builds from Kafka's answers, and the record of the ones it decides
itself.

:class:`RefusalRecorder` hands a refusal decided before producing (a reused key, field rules,
the dry run, no waiting slot) to the :class:`gateway.ports.RefusalLog` as a CommandRefusal;
:func:`finished_receipt` turns a command result into its receipt or its refusal;
:func:`kafka_unavailable` is the UNAVAILABLE of a record Kafka did not acknowledge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from google.rpc import code_pb2

from gateway import refusals
from gateway.call_hooks import CallHooks
from gateway.command_requests import receipt_for
from gateway.ports import KafkaUnavailable, RefusalLog
from gateway.refusals import Refusal
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, results_pb2
from prgate.v1.refusals_pb2 import CommandRefusal


class RefusalRecorder:
    """Records admission's own refusals (never produced) in the refusal log, best effort."""

    def __init__(self, refusal_log: RefusalLog, clock: Callable[[], float]) -> None:
        """``clock`` gives Unix seconds (the record's ``refused_at``)."""
        self._refusal_log = refusal_log
        self._clock = clock

    def __call__(
        self,
        refusal: Refusal,
        envelope: commands_pb2.CommandEnvelope,
        hooks: CallHooks,
        violations: Iterable[outcome_pb2.Violation] = (),
    ) -> Refusal:
        """Hand ``refusal`` of ``envelope`` (never produced) to the refusal log; return it."""
        info = refusal.info
        traceparent = hooks.traceparent
        parts = (traceparent or "").split("-")
        record = CommandRefusal(
            command=envelope,
            code=refusal.status.code,
            code_name=refusal.code_name,
            message=refusal.status.message,
            reason=info.reason if info is not None else "",
            violations=list(violations),
            trace_id=parts[1] if len(parts) == 4 else "",
        )
        record.refused_at.FromNanoseconds(int(self._clock() * 1e9))
        self._refusal_log.record(record, traceparent)
        return refusal


def finished_receipt(result: results_pb2.CommandResult) -> svc.CommandReceipt:
    """The receipt of a finished command; a refusal becomes the matching Refusal."""
    ids = {"command_id": result.command_id, "pull_request_id": result.pull_request_id}
    if result.state == outcome_pb2.COMMAND_STATE_REJECTED and result.violations:
        raise refusals.from_violations(result.violations, **ids)
    if result.state == outcome_pb2.COMMAND_STATE_FAILED:
        raise refusals.error(
            code_pb2.ABORTED,
            f"the processor could not apply the command: {result.error_message}",
            refusals.error_info("COMMAND_FAILED", **ids),
        )
    return receipt_for(result)


def kafka_unavailable(envelope: commands_pb2.CommandEnvelope, exc: KafkaUnavailable) -> Refusal:
    """UNAVAILABLE with a RetryInfo: Kafka did not acknowledge ``envelope``'s record."""
    return refusals.error(
        code_pb2.UNAVAILABLE,
        f"Kafka did not acknowledge the command: {exc}",
        refusals.error_info(
            "KAFKA_UNAVAILABLE",
            command_id=envelope.command_id,
            pull_request_id=envelope.pull_request_id,
        ),
        refusals.retry_after(1.0),
    )
