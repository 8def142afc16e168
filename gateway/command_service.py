"""PullRequestCommandService over gRPC: admission's answers as responses and status codes.

The command steps (envelope, idempotency, field rules, read-your-writes, dry run, produce,
wait for the result) live in :mod:`gateway.admission`, without gRPC. This servicer only
translates: the call's metadata, caller and deadline in; the receipt as the RPC's response or
a refusal as the call's status with its ``google.rpc`` details out; and it gives each call its
span, metrics and outcome log line (:mod:`gateway.command_telemetry`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from google.protobuf.message import Message

from gateway import errors
from gateway.admission import Admission
from gateway.command_requests import CommandRequest
from gateway.command_specs import SPECS, CommandSpec
from gateway.command_telemetry import CommandTelemetry
from gateway.consistency_tokens import ConsistencyTokens
from gateway.errors import Context
from gateway.ports import CommandSender, PullRequestView, RefusalLog, ResultSource
from gateway.refusals import Refusal
from gateway.settings import GatewaySettings
from prgate.kafka.contract import HEADER_TRACEPARENT
from prgate.observability.metrics import GatewayMetrics
from prgate.observability.tracing import Tracing
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc

CallerOf = Callable[[Context], str]


def metadata_value(context: Context, key: str) -> str:
    """The call's metadata entry ``key`` as text; "" when absent."""
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value = item[1]
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return ""


class GrpcCall:
    """Admission's CallContext over a grpc.aio servicer context."""

    def __init__(self, context: Context, caller_of: CallerOf) -> None:
        self._context = context
        self._caller_of = caller_of

    def caller(self) -> str:
        return str(self._caller_of(self._context))

    def header(self, name: str) -> str:
        return metadata_value(self._context, name)

    def time_remaining(self) -> float | None:
        remaining: float | None = self._context.time_remaining()
        return remaining


class CommandService(svc_grpc.PullRequestCommandServiceServicer):
    """The command servicer. Kafka access comes in through the ports, so tests can fake it.

    ``admission`` is the transport-free core; another transport serving the same gateway
    shares it (one idempotency table, one read-your-writes state).
    """

    def __init__(
        self,
        *,
        settings: GatewaySettings,
        results_topic: str,
        sender: CommandSender,
        results: ResultSource,
        view: PullRequestView,
        refusal_log: RefusalLog | None = None,
        caller_of: CallerOf | None = None,
        clock: Callable[[], float] = time.time,
        metrics: GatewayMetrics | None = None,
        tracing: Tracing | None = None,
        deployment: str = "",
    ) -> None:
        """``caller_of`` names the authenticated caller of a call ("" for everyone without);
        ``clock`` gives Unix seconds; metrics and tracing are off when None; ``refusal_log``
        gets the refusals admission decides itself (none kept when None); ``deployment`` (the
        pull-requests topic name) keys the consistency tokens when no secret is set, as in
        :class:`gateway.query_service.QueryService`."""
        self.admission = Admission(
            settings=settings,
            results_topic=results_topic,
            sender=sender,
            results=results,
            view=view,
            refusal_log=refusal_log,
            clock=clock,
            tokens=ConsistencyTokens.for_deployment(
                settings.page_token_secret, deployment, settings.page_token_accepted_secret
            ),
        )
        self._caller_of: CallerOf = caller_of or (lambda context: "")
        self._metrics = metrics
        self._tracing = tracing

    async def _call(
        self, spec: CommandSpec, request: CommandRequest, context: Context
    ) -> svc.CommandReceipt | None:
        """The receipt; None after a refusal, whose status is then set on ``context``."""
        caller_traceparent = (
            metadata_value(context, HEADER_TRACEPARENT) if self._tracing is not None else ""
        )
        with CommandTelemetry(
            spec.rpc,
            metrics=self._metrics,
            tracing=self._tracing,
            caller_traceparent=caller_traceparent,
        ) as telemetry:
            try:
                receipt = await self.admission.admit(
                    spec, request, GrpcCall(context, self._caller_of), telemetry
                )
            except Refusal as exc:
                telemetry.refused(exc)
                errors.refuse(context, exc)
                return None
            telemetry.answered(receipt)
            return receipt

    # -- the eight command RPCs: one method each, made from SPECS below the class ------------

    # -- WatchCommand -------------------------------------------------------------------------

    async def WatchCommand(
        self, request: svc.WatchCommandRequest, context: Context
    ) -> AsyncIterator[svc.WatchCommandResponse]:
        call = GrpcCall(context, self._caller_of)
        try:
            async for receipt in self.admission.watch(request.command_id, call):
                yield svc.WatchCommandResponse(receipt=receipt)
        except Refusal as exc:
            await errors.abort(context, exc)


def _command_rpc(spec: CommandSpec) -> Callable[..., Awaitable[Message | None]]:
    """The servicer method of one command RPC: admit, then wrap the receipt in its response."""
    response_type: type[Message] = getattr(svc, f"{spec.rpc}Response")

    async def rpc(
        self: CommandService, request: CommandRequest, context: Context
    ) -> Message | None:
        receipt = await self._call(spec, request, context)
        # None: refused, the status is set on the context (no exception through the stack).
        return None if receipt is None else response_type(receipt=receipt)

    rpc.__name__ = rpc.__qualname__ = spec.rpc
    rpc.__doc__ = f"{spec.rpc}: admission's receipt as ``{spec.rpc}Response``."
    return rpc


# grpc registers servicer methods by name (getattr), so these replace the generated base's.
for _spec in SPECS.values():
    setattr(CommandService, _spec.rpc, _command_rpc(_spec))
