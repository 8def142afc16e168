"""A SERVER span for every call of the gateway, by OpenTelemetry's RPC conventions.

Every RPC (commands, queries, watches, health, reflection; over gRPC and over Connect) gets a
span named ``<service>/<method>`` (``prgate.v1.PullRequestQueryService/GetPullRequest``) with
``rpc.system`` (``grpc``, or ``connect_rpc`` on the Connect port), ``rpc.service``,
``rpc.method`` and, when it ends, ``rpc.grpc.status_code`` (the status code as an integer; on
the Connect port also ``rpc.connect_rpc.error_code``, e.g. ``not_found``, for a failed call).
Its status is ERROR only for the codes that are the server's failure. The caller's W3C
``traceparent`` (metadata, or the HTTP header on the Connect port) is its parent.

The span is the current one while the call's handler runs, so every log line the handler
writes carries its ``trace_id``/``span_id`` (prgate/observability/logs.py), and a command
call's telemetry (gateway/command_telemetry.py) adds its attributes to this same span.
"""

from __future__ import annotations

from contextlib import AbstractContextManager as ContextManager

import grpc

from gateway.connect_errors import connect_code
from gateway.observed_calls import CallInfo, Interceptor, ObservedCall
from prgate.observability.tracing import TRACEPARENT, Span, Tracing

# Codes that are the server's failure, not the caller's (OpenTelemetry's gRPC conventions).
SERVER_ERROR_CODES = frozenset(
    (
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    )
)


class _Spanned:
    __slots__ = ("_connect", "_span")

    def __init__(self, span: Span, connect: bool) -> None:
        self._span, self._connect = span, connect

    def current(self) -> ContextManager[None]:
        return self._span.current()

    def sent(self) -> None:
        pass

    def done(self, code: grpc.StatusCode) -> None:
        self._span.set_attribute("rpc.grpc.status_code", code.value[0])
        if self._connect and code is not grpc.StatusCode.OK:
            self._span.set_attribute("rpc.connect_rpc.error_code", connect_code(code).value)
        if code in SERVER_ERROR_CODES:
            self._span.error(code.name)
        self._span.end()


class RpcSpans(Interceptor):
    """Starts, makes current and ends the span of every call (see the module docstring)."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def start(self, info: CallInfo) -> ObservedCall:
        span = self._tracing.start_call(
            info.method,
            info.header(TRACEPARENT),
            service=info.service,
            system=info.transport,
        )
        return _Spanned(span, info.transport == "connect_rpc")
