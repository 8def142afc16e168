"""Watching every call of the gateway from start to status, whatever its transport.

The per-RPC metrics (gateway/rpc_metrics.py) and spans (gateway/rpc_spans.py) are interceptors
that need the same three moments of a call: it starts, it sends a stream message, it ends with
a status code. :func:`observed` wraps a method handler so an :class:`ObservedCall` hears them,
keeping the behavior's kind (gateway/handlers.py), and makes the observer's context current
around every step of the behavior (so a span is the current one while the handler runs, and
every log line it writes carries the span's ids).

The same interceptors serve the gRPC port and the Connect port (gateway/connect_bridge.py): a
Connect call's :class:`gateway.connect_bridge.ConnectServicerContext` answers ``code()`` too,
its aborts raise :class:`gateway.connect_errors.Aborted`, and its call details say
``transport="connect_rpc"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from gateway.connect_errors import Aborted
from gateway.handlers import behavior_of, replaced, responses, writes_with_context

_TYPES = {
    "unary_unary": "unary",
    "unary_stream": "server_stream",
    "stream_unary": "client_stream",
    "stream_stream": "bidi_stream",
}


@dataclass(frozen=True)
class CallInfo:
    """What is known of a call when it starts.

    ``grpc_type``: ``unary``, ``server_stream``, ``client_stream`` or ``bidi_stream``;
    ``service`` (``prgate.v1.PullRequestCommandService``) and ``method`` (``OpenPullRequest``)
    from the call's path; ``transport``: ``grpc`` or ``connect_rpc`` (OpenTelemetry's
    ``rpc.system`` values); ``metadata``: the request's metadata (lower-case keys).
    """

    grpc_type: str
    service: str
    method: str
    transport: str
    metadata: tuple[tuple[str, Any], ...]

    def header(self, key: str) -> str:
        """The first metadata value of ``key`` as text; empty when absent."""
        for name, value in self.metadata:
            if name == key:
                return value if isinstance(value, str) else value.decode(errors="replace")
        return ""


class ObservedCall(Protocol):
    """One call as an observer follows it."""

    def current(self) -> ContextManager[None]:
        """Entered around each step of the behavior (e.g. makes a span current)."""
        ...

    def sent(self) -> None:
        """The call sent one stream message."""
        ...

    def done(self, code: grpc.StatusCode) -> None:
        """The call ended with ``code`` (``OK`` for a success)."""
        ...


Start = Callable[[CallInfo], ObservedCall]


def status_code(context: Any, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status code set on ``context`` (grpc.aio's or the Connect bridge's), else
    ``default``."""
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc.aio keeps the integer of the code it was given
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    return default


def _ended_code(exc: BaseException, context: Any) -> grpc.StatusCode:
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    if isinstance(exc, Aborted):
        return exc.code
    if isinstance(exc, grpc.aio.AbortError):
        return status_code(context, grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN


def call_info(handler: grpc.RpcMethodHandler, details: Any) -> CallInfo:  # type: ignore[type-arg]
    """The :class:`CallInfo` of a handler and its ``grpc.HandlerCallDetails``."""
    service, _, method = details.method.lstrip("/").rpartition("/")
    request = "stream" if handler.request_streaming else "unary"
    response = "stream" if handler.response_streaming else "unary"
    return CallInfo(
        _TYPES[f"{request}_{response}"],
        service,
        method,
        getattr(details, "transport", "grpc"),
        tuple(details.invocation_metadata or ()),
    )


def observed(
    handler: grpc.RpcMethodHandler,  # type: ignore[type-arg]
    details: Any,
    start: Start,
) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    """``handler`` whose every call ``start(info)`` follows (see the module docstring)."""
    info = call_info(handler, details)
    inner = behavior_of(handler)

    if not handler.response_streaming or writes_with_context(inner):

        async def call(request: Any, context: Any) -> Any:
            watched = start(info)
            code = grpc.StatusCode.OK
            try:
                with watched.current():
                    result = inner(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                code = status_code(context, grpc.StatusCode.OK)
                return result
            except BaseException as exc:
                code = _ended_code(exc, context)
                raise
            finally:
                watched.done(code)

        return replaced(handler, call)

    async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
        watched = start(info)
        code = grpc.StatusCode.OK
        items = responses(inner(request, context))
        try:
            while True:
                # Current around each step only: a context entered across a yield would be
                # left in whatever context closes the generator.
                with watched.current():
                    try:
                        item = await anext(items)
                    except StopAsyncIteration:
                        break
                watched.sent()
                yield item
            code = status_code(context, grpc.StatusCode.OK)
        except BaseException as exc:
            code = _ended_code(exc, context)
            raise
        finally:
            with contextlib.suppress(Exception):
                await items.aclose()
            watched.done(code)

    return replaced(handler, stream)


class Interceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """A server interceptor that hands every call to :meth:`start`."""

    def start(self, info: CallInfo) -> ObservedCall:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return observed(handler, handler_call_details, self.start)
