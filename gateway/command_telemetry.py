"""What one command call leaves behind: its span, its metrics and one outcome log line.

Transport-neutral: the gRPC servicer creates one :class:`CommandTelemetry` per call and hands
it to admission as its :class:`gateway.call_hooks.CallHooks`; another transport would do the
same, so every way in is counted, traced and logged alike (README "Metrics", "Tracing").
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

from gateway.refusals import Refusal
from prgate.domain import command_type_name
from prgate.observability.metrics import GatewayMetrics
from prgate.observability.tracing import Span, Tracing
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, results_pb2

log = logging.getLogger(__name__)

# Codes that are the server's failure, not the caller's (OpenTelemetry's gRPC conventions).
SERVER_ERROR_OUTCOMES = frozenset(
    ("unknown", "deadline_exceeded", "unimplemented", "internal", "unavailable", "data_loss")
)


class CommandTelemetry:
    """The span, metrics and outcome line of one command call; a context manager that ends
    the span it started (none when the RPC's span is current: it adds to that one).

    Times are measured from construction (the call's arrival) with ``time.perf_counter``.
    ``caller_traceparent`` is the traceparent the caller sent (its span becomes the parent).
    """

    def __init__(
        self,
        rpc: str,
        *,
        metrics: GatewayMetrics | None,
        tracing: Tracing | None,
        caller_traceparent: str = "",
    ) -> None:
        self._started = time.perf_counter()
        self._rpc = rpc
        self._metrics = metrics
        # The RPC's span (gateway/rpc_spans.py) when it is current; one of its own otherwise
        # (a servicer called without the interceptor), which it then ends.
        current = tracing.current_call() if tracing is not None else None
        self._owns_span = current is None
        self._span: Span | None = (
            current
            if current is not None
            else tracing.start_call(rpc, caller_traceparent)
            if tracing is not None
            else None
        )

    def __enter__(self) -> CommandTelemetry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._span is not None and self._owns_span:
            self._span.end()

    def _elapsed_s(self) -> float:
        return time.perf_counter() - self._started

    # -- CallHooks ----------------------------------------------------------------------------

    @property
    def traceparent(self) -> str | None:
        return self._span.traceparent if self._span is not None else None

    def acknowledged(self, envelope: commands_pb2.CommandEnvelope) -> None:
        if self._metrics is not None:
            self._metrics.accept_seconds.labels(command_type_name(envelope)).observe(
                self._elapsed_s()
            )

    def result_arrived(self, result: results_pb2.CommandResult) -> None:
        if self._span is not None:
            self._span.event(
                "result", state=outcome_pb2.CommandState.Name(result.state), version=result.version
            )
        if self._metrics is not None:
            self._metrics.round_trip_seconds.labels(result.command_type).observe(self._elapsed_s())

    # -- the outcome --------------------------------------------------------------------------

    def answered(self, receipt: svc.CommandReceipt) -> None:
        """The call ends OK with ``receipt``: outcome ``accepted``, ``succeeded``, ..."""
        state = outcome_pb2.CommandState.Name(receipt.state).removeprefix("COMMAND_STATE_")
        self._outcome(state.lower(), 0, receipt.command_id, receipt.pull_request_id)

    def refused(self, refusal: Refusal) -> None:
        """The call ends with ``refusal``: outcome is its code's name, e.g. ``not_found``."""
        ids = refusal.ids()
        self._outcome(
            refusal.code_name.lower(),
            refusal.status.code,
            ids.get("command_id", ""),
            ids.get("pull_request_id", ""),
            message=str(refusal),
        )

    def _outcome(
        self,
        outcome: str,
        status_code: int,
        command_id: str,
        pull_request_id: str,
        message: str = "",
    ) -> None:
        """One log line and one count per command call, with its ids (``status_code``: the
        call's gRPC status code, 0 for OK)."""
        elapsed_ms = self._elapsed_s() * 1000
        if self._metrics is not None:
            self._metrics.commands.labels(self._rpc, outcome).inc()
        ids: dict[str, str] = {}
        if self._span is not None:
            self._span.set(command_id=command_id, pull_request_id=pull_request_id, outcome=outcome)
            self._span.set_attribute("rpc.grpc.status_code", status_code)
            if outcome in SERVER_ERROR_OUTCOMES:
                self._span.error(message or outcome)
            ids["trace_id"], ids["span_id"] = self._span.ids
        log.info(
            "command_outcome",
            extra={
                "rpc": self._rpc,
                "outcome": outcome,
                "command_id": command_id,
                "pull_request_id": pull_request_id,
                "duration_ms": round(elapsed_ms, 1),
                **({"detail": message} if message else {}),
                **ids,
            },
        )
