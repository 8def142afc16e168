"""Optional OpenTelemetry tracing of a command's path: gRPC call → command record → processor.

Off by default, and then free: :func:`setup` returns ``None``, callers test ``if tracing is
not None`` and nothing of OpenTelemetry is imported. The packages come with the ``tracing``
extra (``pip install 'prgate[tracing]'``); asking for tracing without them is a start-up error.

Span names and attributes follow OpenTelemetry's RPC semantic conventions: every call of the
gateway (commands, queries, watches, health; gateway/rpc_spans.py) is a SERVER span named like
``prgate.v1.PullRequestCommandService/OpenPullRequest`` with ``rpc.system`` (``grpc``, or
``connect_rpc`` on the HTTP port), ``rpc.service``, ``rpc.method`` and
``rpc.grpc.status_code`` (the call's status code as an integer); its status is ERROR only for
codes that are the server's failure. The call's span is current while its handler runs, and
the processor's command span while it decides the command, so while tracing is on every log
line written there carries the span's ``trace_id`` and ``span_id``
(prgate/observability/logs.py); the command outcome lines carry the ids of their command's
span.

The context travels on Kafka in the fixed W3C ``traceparent`` header (docs/contract.md): the
gateway puts its call span's traceparent on the command record, the processor starts a child
span per command
from it and writes that child's traceparent on the events, snapshot and result it produces.

Each process gets its own :class:`TracerProvider` (not the global one), so tests can run a
gateway and a processor side by side with their own exporters.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the type checker: importing this module must stay free
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span as OtelSpan
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

MODES = ("off", "console", "otlp")
TRACER_NAME = "prgate"
TRACEPARENT = "traceparent"
COMMAND_SERVICE = "prgate.v1.PullRequestCommandService"


class TracingError(Exception):
    """Tracing was asked for but cannot be set up (unknown mode, packages missing)."""


class Span:
    """One started span; a thin wrapper so callers need no OpenTelemetry import."""

    __slots__ = ("_span", "_traceparent")

    def __init__(self, span: OtelSpan) -> None:
        self._span = span
        self._traceparent: str | None = None

    @property
    def traceparent(self) -> str:
        """This span's W3C traceparent: ``00-<trace id>-<span id>-<flags>``."""
        if self._traceparent is None:
            ctx = self._span.get_span_context()
            self._traceparent = (
                f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
            )
        return self._traceparent

    @property
    def ids(self) -> tuple[str, str]:
        """(trace id, span id) in hex, as the log lines carry them."""
        ctx = self._span.get_span_context()
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

    def set(self, **attributes: str | int | bool) -> None:
        self._span.set_attributes(attributes)

    def set_attribute(self, key: str, value: str | int | bool) -> None:
        """One attribute whose name is not an identifier, e.g. ``rpc.grpc.status_code``."""
        self._span.set_attribute(key, value)

    def rename(self, name: str) -> None:
        self._span.update_name(name)

    def event(self, name: str, **attributes: str | int | bool) -> None:
        self._span.add_event(name, attributes)

    def error(self, description: str) -> None:
        """Mark the span failed (its status), e.g. for an aborted transaction."""
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, description))

    def end(self) -> None:
        self._span.end()

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """This span as the current one inside the block (OpenTelemetry's context): log lines
        written there carry its ids, spans started there are its children. Does not end it."""
        from opentelemetry.trace import use_span

        with use_span(
            self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield


class Tracing:
    """Starts the spans of one process (gateway or processor)."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._provider = provider
        self._tracer: Tracer = provider.get_tracer(TRACER_NAME)
        self._propagator = TraceContextTextMapPropagator()
        self._server = SpanKind.SERVER
        self._consumer = SpanKind.CONSUMER

    def _parent(self, traceparent: str | None) -> Any:
        # An absent or malformed traceparent gives an empty context: the span starts a trace.
        if not traceparent:
            return None
        return self._propagator.extract({TRACEPARENT: traceparent})

    def start_call(
        self,
        rpc: str,
        traceparent: str | None = None,
        *,
        service: str = COMMAND_SERVICE,
        system: str = "grpc",
    ) -> Span:
        """The SERVER span of one RPC, named ``<service>/<rpc>`` (e.g.
        ``prgate.v1.PullRequestCommandService/OpenPullRequest``), child of the caller's
        ``traceparent`` (gRPC metadata) when it sent one; ``system`` is its ``rpc.system``
        (``grpc``, ``connect_rpc``). The caller sets ``rpc.grpc.status_code`` when the call
        ends (:meth:`Span.set_attribute`)."""
        return Span(
            self._tracer.start_span(
                f"{service}/{rpc}",
                context=self._parent(traceparent),
                kind=self._server,
                attributes={"rpc.system": system, "rpc.service": service, "rpc.method": rpc},
            )
        )

    def current_call(self) -> Span | None:
        """The current span when one is recording (the RPC's, made current by
        gateway/rpc_spans.py around its handler); None outside any."""
        from opentelemetry import trace

        span = trace.get_current_span()
        return Span(span) if span.is_recording() else None

    def start_command(self, traceparent: str | None) -> Span:
        """The span of one consumed command, child of the command record's traceparent.

        Named ``prgate.processor/command`` until :meth:`Span.rename` gives it the command type
        (known only once the record is decoded).
        """
        return Span(
            self._tracer.start_span(
                "prgate.processor/command",
                context=self._parent(traceparent),
                kind=self._consumer,
                attributes={"messaging.system": "kafka"},
            )
        )

    def warm_up(self) -> None:
        """Do at start what the first traced call would otherwise pay for: the lazy imports
        and first uses of the propagator, the status types and the current context."""
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        self._parent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        Status(StatusCode.ERROR, "warm-up")
        trace.get_current_span()

    def shutdown(self) -> None:
        """Export what is buffered and stop the exporters (bounded by the SDK's timeouts)."""
        self._provider.shutdown()


def _require_sdk() -> None:
    for module in ("opentelemetry.trace", "opentelemetry.sdk.trace"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise TracingError(
                "tracing needs the OpenTelemetry packages: pip install 'prgate[tracing]'"
                " (or set PRGATE_TRACING=off)"
            )


def with_exporter(exporter: SpanExporter, service_name: str, *, batch: bool = False) -> Tracing:
    """Tracing that hands every ended span to ``exporter`` (tests use an in-memory one)."""
    _require_sdk()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # OTEL_SERVICE_NAME still wins over our default name.
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(named))
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    tracing = Tracing(provider)
    tracing.warm_up()
    _log_trace_ids()
    return tracing


def _current_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def _log_trace_ids() -> None:
    from prgate.observability import logs

    logs.enable_trace_ids(_current_ids)


def _otlp_exporter() -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise TracingError(
            "PRGATE_TRACING=otlp needs opentelemetry-exporter-otlp-proto-grpc:"
            " pip install 'prgate[tracing]'"
        ) from exc
    # Endpoint, headers, TLS: the standard OTEL_EXPORTER_OTLP_* environment variables.
    return OTLPSpanExporter()


def setup(mode: str, service_name: str) -> Tracing | None:
    """Tracing as ``mode`` says (``off``, ``console``, ``otlp``), or None when off.

    Raises :class:`TracingError` for an unknown mode or missing packages, so a process fails
    at start instead of running without the traces it was asked for.
    """
    mode = (mode or "off").strip().lower()
    if mode not in MODES:
        raise TracingError(f"tracing must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return None
    _require_sdk()
    if mode == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        tracing = with_exporter(ConsoleSpanExporter(), service_name, batch=True)
    else:
        tracing = with_exporter(_otlp_exporter(), service_name, batch=True)
    log.info("tracing_enabled", extra={"mode": mode, "service": service_name})
    return tracing
