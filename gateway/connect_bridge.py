"""The Connect adapter's bridge to the gRPC handlers (the call half of gateway/connect_http.py).

:class:`GrpcBridge` runs, for each Connect call, the very gRPC method handler the gRPC server
runs, behind the same interceptors, with :class:`ConnectServicerContext` standing in for
grpc.aio's servicer context: the request headers are the call's metadata, ``connect-timeout-ms``
is its deadline, and an abort ends the call with the Connect error of its status
(gateway/connect_errors.py).
"""

from __future__ import annotations

import contextvars
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from google.protobuf.message import Message

from gateway.connect_errors import Aborted, connect_error
from gateway.handlers import behavior_of, responses

# A gRPC interceptor of the gateway (grpc.aio.ServerInterceptor): the same objects serve both.
Interceptor = Any
# A servicer's registration function: add_<Service>Servicer_to_server(servicer, server).
Registration = Callable[[Any, Any], None]


# Set by the port's router for each HTTP call; the bridge marks it when the call reaches the
# gRPC handlers (so the router knows which calls the library answered by itself).
BRIDGED: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "prgate_connect_bridged", default=None
)


def _mark_bridged() -> None:
    marker = BRIDGED.get()
    if marker is not None:
        marker[0] = True


class ConnectServicerContext:
    """The part of ``grpc.aio.ServicerContext`` the gateway's handlers use, over a Connect
    request: metadata from the HTTP headers, deadline from ``connect-timeout-ms``, abort as
    :class:`Aborted`. Header names are lower case, as in gRPC metadata."""

    def __init__(self, ctx: RequestContext[Any, Any]) -> None:
        self._ctx = ctx
        headers = ctx.request_headers
        self._metadata = tuple((name, value) for name in headers for value in headers.getall(name))
        self._trailing: tuple[tuple[str, Any], ...] = ()
        self._code: grpc.StatusCode | None = None
        self._details = ""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        """Seconds left of the caller's ``connect-timeout-ms``; None without one."""
        remaining_ms = self._ctx.timeout_ms
        return None if remaining_ms is None else max(0.0, remaining_ms / 1000)

    def peer(self) -> str:
        """``http:<address>:<port>`` of the client (gRPC's ``ipv4:...`` has its scheme)."""
        return f"http:{self._ctx.client_address or 'unknown'}"

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, Any]]) -> None:
        self._trailing = tuple(metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        """The code a handler set (set_code), None when it set none."""
        return self._code

    def set_details(self, details: str) -> None:
        self._details = details

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> NoReturn:
        raise Aborted(code, details, tuple(trailing_metadata) or self._trailing)

    def status_set(self) -> Aborted | None:
        """A status a handler set without aborting (set_code), as an :class:`Aborted`."""
        if self._code is None or self._code == grpc.StatusCode.OK:
            return None
        return Aborted(self._code, self._details, self._trailing)


def _snake(name: str) -> str:
    """``OpenPullRequest`` -> ``open_pull_request``: the generated Connect service's names."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _HandlerCollector:
    """Stands in for a ``grpc.aio.Server`` to take a servicer's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}  # type: ignore[type-arg]

    def add_registered_method_handlers(
        self,
        service: str,
        handlers: Mapping[str, grpc.RpcMethodHandler],  # type: ignore[type-arg]
    ) -> None:
        for method, handler in handlers.items():
            self.handlers[f"/{service}/{method}"] = handler

    def add_generic_rpc_handlers(self, _handlers: Any) -> None:
        """The generic form of the same handlers; the registered ones suffice."""


@dataclass(frozen=True)
class _CallDetails:
    """``grpc.HandlerCallDetails`` of a Connect call: its method path and headers, and the
    transport (``rpc.system``) the observers (gateway/observed_calls.py) label it with."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]
    transport: str = "connect_rpc"


class GrpcBridge:
    """The gRPC method handlers of the given servicers, called through ``interceptors`` as
    the gRPC server calls them (outermost first); attributes named like the generated
    Connect service's methods (``open_pull_request``), so it is the service the
    ``*ASGIApplication`` classes of ``prgate/v1/*_connect.py`` take."""

    def __init__(
        self, servicers: Sequence[tuple[Registration, Any]], interceptors: Sequence[Interceptor]
    ) -> None:
        collector = _HandlerCollector()
        for register, servicer in servicers:
            register(servicer, collector)
        self._handlers = collector.handlers
        self._interceptors = tuple(interceptors)
        self._by_name = {_snake(path.rpartition("/")[2]): path for path in collector.handlers}

    def grpc_type(self, path: str) -> str | None:
        """``unary`` or ``server_stream`` for a method path of these services
        (``/prgate.v1.PullRequestCommandService/OpenPullRequest``); None for any other."""
        handler = self._handlers.get(path)
        if handler is None:
            return None
        return "server_stream" if handler.response_streaming else "unary"

    def __getattr__(self, name: str) -> Callable[..., Any]:
        path = self.__dict__.get("_by_name", {}).get(name)
        if path is None:
            raise AttributeError(name)
        if self._handlers[path].response_streaming:
            return lambda request, ctx: self._stream(path, request, ctx)
        return lambda request, ctx: self._unary(path, request, ctx)

    async def _handler(
        self, path: str, context: ConnectServicerContext
    ) -> grpc.RpcMethodHandler | None:  # type: ignore[type-arg]
        details = _CallDetails(path, context.invocation_metadata())

        async def innermost(_details: Any) -> grpc.RpcMethodHandler | None:  # type: ignore[type-arg]
            return self._handlers.get(path)

        continuation: Callable[[Any], Awaitable[Any]] = innermost
        for interceptor in reversed(self._interceptors):
            continuation = _bind(interceptor, continuation)
        handler: grpc.RpcMethodHandler | None = await continuation(details)  # type: ignore[type-arg]
        return handler

    async def _unary(self, path: str, request: Message, ctx: RequestContext[Any, Any]) -> Any:
        _mark_bridged()
        context = ConnectServicerContext(ctx)
        try:
            handler = await self._handler(path, context)
            if handler is None:
                raise ConnectError(Code.UNIMPLEMENTED, f"method {path} not found")
            # A refusing handler (no valid token) is request-streaming: it never reads.
            argument: Any = _one(request) if handler.request_streaming else request
            result = behavior_of(handler)(argument, context)
            response = await result if inspect.isawaitable(result) else result
        except Aborted as exc:
            raise connect_error(exc) from None
        if (status := context.status_set()) is not None:
            raise connect_error(status)
        return response

    async def _stream(
        self, path: str, request: Message, ctx: RequestContext[Any, Any]
    ) -> AsyncIterator[Any]:
        _mark_bridged()
        context = ConnectServicerContext(ctx)
        try:
            handler = await self._handler(path, context)
            if handler is None:
                raise ConnectError(Code.UNIMPLEMENTED, f"method {path} not found")
            if not handler.response_streaming:  # a refusal: aborts, returns nothing
                argument: Any = _one(request) if handler.request_streaming else request
                result = behavior_of(handler)(argument, context)
                if inspect.isawaitable(result):
                    await result
            else:
                async for item in responses(behavior_of(handler)(request, context)):
                    yield item
        except Aborted as exc:
            raise connect_error(exc) from None
        if (status := context.status_set()) is not None:
            raise connect_error(status)


def _bind(
    interceptor: Interceptor, continuation: Callable[[Any], Awaitable[Any]]
) -> Callable[[Any], Awaitable[Any]]:
    async def call(details: Any) -> Any:
        return await interceptor.intercept_service(continuation, details)

    return call


async def _one(request: Message) -> AsyncIterator[Message]:
    yield request
