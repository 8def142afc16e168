"""Turn an undecodable request body into INVALID_ARGUMENT instead of grpc's UNKNOWN.

grpc.aio answers an exception raised by a request deserializer with UNKNOWN and the exception
text. This interceptor wraps each unary-request handler's deserializer so a body that does not
parse becomes a marker, and the handler answers the marker with INVALID_ARGUMENT and
BadRequest details, naming the expected message type and nothing internal. It must be the
outermost interceptor, so nothing else ever sees the marker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway import errors


class _Malformed:
    """What the wrapped deserializer returns for a body that does not parse."""

    __slots__ = ()


MALFORMED = _Malformed()


def _request_type_name(method: str) -> str:
    # "/prgate.v1.PullRequestCommandService/OpenPullRequest" -> "prgate.v1.OpenPullRequestRequest"
    service, _, rpc = method.lstrip("/").partition("/")
    package = service.rpartition(".")[0]
    return f"{package}.{rpc}Request" if package else f"{rpc}Request"


def _refusal(method: str) -> errors.GatewayError:
    return errors.invalid_argument(
        "",
        "MALFORMED_REQUEST",
        f"the request body is not a valid {_request_type_name(method)} message",
    )


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps unary-request handlers; leaves streaming-request handlers (reflection) alone."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        decode = handler.request_deserializer

        def safe_decode(body: bytes) -> Any:
            try:
                return decode(body)
            except (DecodeError, ValueError, TypeError):
                return MALFORMED

        codecs = {
            "request_deserializer": safe_decode,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                if request is MALFORMED:
                    await errors.abort(context, _refusal(method))
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, **codecs)
        inner_stream: Any = handler.unary_stream

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if request is MALFORMED:
                await errors.abort(context, _refusal(method))
            async for item in inner_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(stream, **codecs)
