"""Turn an undecodable request body into INVALID_ARGUMENT instead of grpc's UNKNOWN.

grpc.aio answers an exception raised by a request deserializer with UNKNOWN and the exception
text. This interceptor wraps each unary-request handler's deserializer so a body that does not
parse becomes a marker, and the handler answers the marker with INVALID_ARGUMENT and
BadRequest details, naming the expected message type and nothing internal. It must be the
outermost interceptor, so nothing else ever sees the marker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway import errors
from gateway.handlers import guarded


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
    """Wraps unary-request handlers; leaves streaming-request handlers (reflection) alone.

    Works for every response kind, ours and the libraries' (gateway/handlers.py): the health
    service's ``Watch`` writes with ``context.write()`` and must stay a coroutine.
    """

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

        async def refuse_malformed(request: Any, context: Any) -> None:
            if request is MALFORMED:
                await errors.abort(context, _refusal(method))

        return guarded(handler, refuse_malformed, request_deserializer=safe_decode)
