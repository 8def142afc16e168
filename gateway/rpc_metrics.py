"""The standard per-RPC server metrics, named as go-grpc-prometheus and its ports name them.

``grpc_server_started_total``, ``grpc_server_handled_total`` (with ``grpc_code``),
``grpc_server_handling_seconds`` (a histogram) and ``grpc_server_msg_sent_total``, labelled
``grpc_type`` (``unary``, ``server_stream``, ``client_stream``, ``bidi_stream``),
``grpc_service`` (e.g. ``prgate.v1.CommandService``) and ``grpc_method`` (e.g.
``OpenPullRequest``), so the dashboards and alerts written for gRPC servers in other languages
work unchanged. ``grpc_code`` is the code's Go name (``OK``, ``NotFound``, ``InvalidArgument``).

py-grpc-prometheus covers only synchronous servers and the global registry; the gateway is a
grpc.aio server with a registry per process, hence this small interceptor. It goes outermost,
so calls refused by the malformed-body check or authentication are counted too.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway.handlers import behavior_of, replaced, responses, writes_with_context

_TYPES = {
    "unary_unary": "unary",
    "unary_stream": "server_stream",
    "stream_unary": "client_stream",
    "stream_stream": "bidi_stream",
}


def go_code_name(code: grpc.StatusCode) -> str:
    """``NOT_FOUND`` → ``NotFound``: the names the Go and Java servers export."""
    if code is grpc.StatusCode.OK:
        return "OK"
    return "".join(part.capitalize() for part in code.name.split("_"))


def _code(context: Any, default: grpc.StatusCode) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc.aio keeps the integer of the code it was given
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    return default


class GrpcServerMetrics(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
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

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        request = "stream" if handler.request_streaming else "unary"
        response = "stream" if handler.response_streaming else "unary"
        labels = (_TYPES[f"{request}_{response}"], service, method)
        inner = behavior_of(handler)
        started, handled = self.started.labels(*labels), self.handled
        seconds, sent = self.handling_seconds.labels(*labels), self.msg_sent.labels(*labels)

        def done(begun: float, code: grpc.StatusCode) -> None:
            handled.labels(*labels, go_code_name(code)).inc()
            seconds.observe(time.perf_counter() - begun)

        if not handler.response_streaming or writes_with_context(inner):

            async def call(request: Any, context: Any) -> Any:
                started.inc()
                begun = time.perf_counter()
                code = grpc.StatusCode.OK
                try:
                    result = inner(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                    code = _code(context, grpc.StatusCode.OK)
                    return result
                except asyncio.CancelledError:
                    code = grpc.StatusCode.CANCELLED
                    raise
                except grpc.aio.AbortError:
                    code = _code(context, grpc.StatusCode.UNKNOWN)
                    raise
                except Exception:
                    code = grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    done(begun, code)

            return replaced(handler, call)

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            started.inc()
            begun = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                async for item in responses(inner(request, context)):
                    sent.inc()
                    yield item
                code = _code(context, grpc.StatusCode.OK)
            except (asyncio.CancelledError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                code = _code(context, grpc.StatusCode.UNKNOWN)
                raise
            except Exception:
                code = grpc.StatusCode.UNKNOWN
                raise
            finally:
                done(begun, code)

        return replaced(handler, stream)
