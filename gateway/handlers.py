"""Wrapping grpc.aio method handlers without changing how grpc.aio runs them.

grpc.aio chooses how to run a response-streaming behavior from its *function kind*, before
calling it: an ``async def`` coroutine function writes with ``context.write()`` (the health
service's ``Watch``), an async generator function yields its responses (our watches, the
reflection stream), anything else is a synchronous generator run on a thread. A wrapper of
the wrong kind breaks the call: an async generator wrapped around ``Health.Watch`` made grpc
answer UNKNOWN ("'async for' requires an object with __aiter__ method, got coroutine").

Every interceptor of the gateway (malformed bodies, authentication, open streams) therefore
wraps through this module, which keeps the kind: :func:`guarded` runs a check before the
behavior, for each of the four cardinalities and each streaming kind.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

# A method handler's behavior: (request or request iterator, context) -> response(s).
Behavior = Callable[..., Any]
# Runs before the behavior with the same arguments; ends the call by aborting it.
Check = Callable[[Any, Any], Awaitable[None]]
Codec = Callable[[Any], Any] | None

_BUILDERS = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def cardinality(handler: grpc.RpcMethodHandler) -> str:  # type: ignore[type-arg]
    """``unary_unary``, ``unary_stream``, ``stream_unary`` or ``stream_stream``."""
    request = "stream" if handler.request_streaming else "unary"
    response = "stream" if handler.response_streaming else "unary"
    return f"{request}_{response}"


def behavior_of(handler: grpc.RpcMethodHandler) -> Behavior:  # type: ignore[type-arg]
    """The handler's behavior function (the one of its cardinality)."""
    behavior: Behavior = getattr(handler, cardinality(handler))
    return behavior


def writes_with_context(behavior: Behavior) -> bool:
    """True for a response-streaming behavior that grpc.aio runs as a coroutine
    (responses through ``context.write()``), False for a generator of responses."""
    return inspect.iscoroutinefunction(behavior)


def replaced(
    handler: grpc.RpcMethodHandler,  # type: ignore[type-arg]
    behavior: Behavior,
    *,
    request_deserializer: Codec = None,
) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    """``handler`` with another behavior (same cardinality and codecs, unless given)."""
    return _BUILDERS[cardinality(handler)](
        behavior,
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def responses(result: Any) -> AsyncGenerator[Any, None]:
    """The responses of a generator-kind behavior's result, whatever it returned."""
    if inspect.isasyncgen(result):
        try:
            async for item in result:
                yield item
        finally:
            # Closed now, not when collected: a watch's cleanup (unsubscribe) runs at once.
            await result.aclose()
    elif hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif inspect.isawaitable(result):  # wrote with context.write(), or returned nothing
        await result
    elif result is not None:
        for item in result:
            yield item


def guarded(
    handler: grpc.RpcMethodHandler,  # type: ignore[type-arg]
    check: Check,
    *,
    request_deserializer: Codec = None,
) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    """``handler`` whose behavior first awaits ``check(request, context)``; same kind.

    ``check`` ends a call by aborting it (``context.abort`` raises). For request-streaming
    methods it gets the request iterator, and must not read it.
    """
    inner = behavior_of(handler)
    wrapper: Behavior
    if not handler.response_streaming:

        async def unary(request: Any, context: Any) -> Any:
            await check(request, context)
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result

        wrapper = unary
    elif writes_with_context(inner):

        async def writer(request: Any, context: Any) -> None:
            await check(request, context)
            await inner(request, context)

        wrapper = writer
    else:

        async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
            await check(request, context)
            async for item in responses(inner(request, context)):
                yield item

        wrapper = generator
    return replaced(handler, wrapper, request_deserializer=request_deserializer)
