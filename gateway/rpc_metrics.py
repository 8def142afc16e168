"""The standard per-RPC server metrics, named as go-grpc-prometheus and its ports name them.

``grpc_server_started_total``, ``grpc_server_handled_total`` (with ``grpc_code``),
``grpc_server_handling_seconds`` (a histogram) and ``grpc_server_msg_sent_total``, labelled
``grpc_type`` (``unary``, ``server_stream``, ``client_stream``, ``bidi_stream``),
``grpc_service`` (e.g. ``prgate.v1.CommandService``) and ``grpc_method`` (e.g.
``OpenPullRequest``), so the dashboards and alerts written for gRPC servers in other languages
work unchanged. ``grpc_code`` is the code's Go name (``OK``, ``NotFound``, ``InvalidArgument``).

py-grpc-prometheus covers only synchronous servers and the global registry; the gateway is a
grpc.aio server with a registry per process, hence this small interceptor. It goes outermost,
so calls refused by the malformed-body check or authentication are counted too. The Connect
port (gateway/connect_http.py) runs the same interceptor: its calls are counted under the same
names, with the gRPC method and the gRPC code of their Connect error.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import AbstractContextManager as ContextManager

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.observed_calls import CallInfo, Interceptor, ObservedCall


def go_code_name(code: grpc.StatusCode) -> str:
    """``NOT_FOUND`` → ``NotFound``, ``CANCELLED`` → ``Canceled``: the names of Go's
    ``codes`` package, which go-grpc-prometheus exports."""
    if code is grpc.StatusCode.OK:
        return "OK"
    if code is grpc.StatusCode.CANCELLED:
        return "Canceled"  # Go's spelling (codes.Canceled)
    return "".join(part.capitalize() for part in code.name.split("_"))


class _Timed:
    """One call's started count, and its handled count and latency when it ends."""

    __slots__ = ("_begun", "_labels", "_metrics")

    def __init__(self, metrics: GrpcServerMetrics, labels: tuple[str, str, str]) -> None:
        self._metrics, self._labels = metrics, labels
        metrics.started.labels(*labels).inc()
        self._begun = time.perf_counter()

    def current(self) -> ContextManager[None]:
        return contextlib.nullcontext()

    def sent(self) -> None:
        self._metrics.msg_sent.labels(*self._labels).inc()

    def done(self, code: grpc.StatusCode) -> None:
        self._metrics.handled.labels(*self._labels, go_code_name(code)).inc()
        self._metrics.handling_seconds.labels(*self._labels).observe(
            time.perf_counter() - self._begun
        )


class GrpcServerMetrics(Interceptor):
    """Counts and times every call of the server (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status code",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Response latency of RPCs handled by the server, until the status was sent",
            labels,
            registry=registry,
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent", "Stream messages sent by the server", labels, registry=registry
        )

    def start(self, info: CallInfo) -> ObservedCall:
        return _Timed(self, (info.grpc_type, info.service, info.method))

    def refused(self, labels: tuple[str, str, str], code: grpc.StatusCode, seconds: float) -> None:
        """A call answered before any handler saw it (``labels``: grpc_type, grpc_service,
        grpc_method), e.g. the Connect library refusing an undecodable body."""
        self.started.labels(*labels).inc()
        self.handled.labels(*labels, go_code_name(code)).inc()
        self.handling_seconds.labels(*labels).observe(seconds)
