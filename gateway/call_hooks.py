"""What admission tells a transport about one command call: :class:`CallHooks`, and
:class:`NoHooks` for a call nobody traces or measures.

:mod:`gateway.command_telemetry` is the gRPC servicer's implementation; it hands one per call
to :meth:`gateway.admission.Admission.admit`.
"""

from __future__ import annotations

from typing import Protocol

from prgate.v1 import commands_pb2, results_pb2


class CallHooks(Protocol):
    """What admission tells the transport's metrics and spans about one call."""

    @property
    def traceparent(self) -> str | None:
        """The W3C traceparent to put on the command record; None when not tracing."""
        ...

    def acknowledged(self, envelope: commands_pb2.CommandEnvelope) -> None:
        """The broker acknowledged the command record (the command is ACCEPTED)."""
        ...

    def result_arrived(self, result: results_pb2.CommandResult) -> None:
        """The processor's result reached the call that waited for it."""
        ...


class NoHooks:
    """CallHooks that trace nothing and measure nothing."""

    traceparent = None

    def acknowledged(self, envelope: commands_pb2.CommandEnvelope) -> None:
        pass

    def result_arrived(self, result: results_pb2.CommandResult) -> None:
        pass
