"""Bearer-token authentication and actor authorization, as a grpc.aio server interceptor.

Every call except those of the open services (health, reflection) must carry metadata
``authorization: Bearer <token>`` with a token of the token file (gateway/auth_tokens.py);
otherwise it ends UNAUTHENTICATED with ErrorInfo details. A command whose actor fields
(``author``, ``reviewer``, ``merged_by_user``, ``actor``, ``changed_by``) name someone else than
the caller's principal ends PERMISSION_DENIED, unless the caller has a role that may act for
others. Queries and WatchCommand need only a valid token.

The interceptor sets the caller's principal in a context variable for the duration of the call,
and :func:`caller_of` reads it: CommandService stamps it into ``CommandEnvelope.caller`` and
scopes idempotency keys with it.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import errors
from gateway.auth_tokens import Principal, TokenStore

log = logging.getLogger("prgate.gateway.auth")

AUTHORIZATION_METADATA = "authorization"
BEARER = "bearer"
OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
# Fields of a command message that name the user on whose behalf it is sent.
ACTOR_FIELDS = ("author", "reviewer", "merged_by_user", "actor", "changed_by")

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "prgate_principal", default=None
)


def current_principal() -> Principal | None:
    """The principal of the call being served, when authentication is on."""
    return _principal.get()


def caller_of(context: Any) -> str:
    """CommandService's ``caller_of`` when authentication is on: the principal's name.

    The interceptor runs before every command call, so a missing principal is a wiring bug;
    failing the call (INTERNAL) is safer than sending a command without its caller.
    """
    principal = _principal.get()
    if principal is None:
        raise RuntimeError("no authenticated principal for this call")
    return principal.name


def service_of(method: str) -> str:
    """``/pkg.Service/Method`` → ``pkg.Service``."""
    return method.lstrip("/").partition("/")[0]


def unauthenticated(reason: str, message: str) -> errors.GatewayError:
    return errors.error(
        code_pb2.UNAUTHENTICATED,
        message,
        errors.error_info(reason, scheme="Bearer", metadata=AUTHORIZATION_METADATA),
    )


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The token of the one ``authorization: Bearer <token>`` entry; GatewayError otherwise."""
    values = [value for key, value in metadata or () if key.lower() == AUTHORIZATION_METADATA]
    if not values:
        raise unauthenticated(
            "MISSING_TOKEN", "this call needs metadata 'authorization: Bearer <token>'"
        )
    if len(values) > 1:
        raise unauthenticated(
            "MALFORMED_AUTHORIZATION", "send exactly one 'authorization' metadata entry"
        )
    raw = values[0]
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != BEARER or not token:
        raise unauthenticated(
            "MALFORMED_AUTHORIZATION", "the 'authorization' metadata must be 'Bearer <token>'"
        )
    return token


def authenticate(
    tokens: TokenStore, metadata: Sequence[tuple[str, str | bytes]] | None
) -> Principal:
    """The caller's principal, or GatewayError UNAUTHENTICATED (the token is never echoed)."""
    principal = tokens.authenticate(bearer_token(metadata))
    if principal is None:
        raise unauthenticated("INVALID_TOKEN", "the bearer token is not valid")
    return principal


def authorize(principal: Principal, request: Any) -> None:
    """PERMISSION_DENIED when a command's actor field names someone other than the caller,
    or when a check result comes from a caller without the ``checks`` (or ``admin``) role.

    A check result names no actor, and whoever may record one decides whether a pull request
    can merge: it is the CI system's right, not any authenticated user's.
    """
    if not isinstance(request, Message) or "command" not in request.DESCRIPTOR.fields_by_name:
        return  # queries, WatchCommand: any authenticated caller
    command = getattr(request, "command")  # noqa: B009 - a protobuf field, not a constant
    if command.DESCRIPTOR.name == "RecordCheckResult" and not principal.may_record_checks:
        raise errors.error(
            code_pb2.PERMISSION_DENIED,
            f"recording check results needs one of the roles checks, admin; {principal.name!r}"
            " has none of them",
            errors.error_info("ROLE_REQUIRED", role="checks", principal=principal.name),
        )
    if principal.may_act_for_others:
        return
    for name in ACTOR_FIELDS:
        if name not in command.DESCRIPTOR.fields_by_name:
            continue
        actor = getattr(command, name)
        if actor != principal.name:
            field = f"command.{name}"
            raise errors.error(
                code_pb2.PERMISSION_DENIED,
                f"{field} is {actor!r} but the caller is {principal.name!r}; acting for other"
                " users needs one of the roles act-as-any, admin",
                errors.error_info(
                    "ACTOR_NOT_CALLER", field=field, actor=actor, principal=principal.name
                ),
            )


Behavior = Callable[..., Any]


async def _finish(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


def _guarded(inner: Behavior, check: Callable[[Any, Any], Awaitable[Principal]]) -> Behavior:
    """``inner`` (unary response) behind ``check``, with the principal set while it runs."""

    async def behavior(request: Any, context: Any) -> Any:
        principal = await check(request, context)
        reset = _principal.set(principal)
        try:
            return await _finish(inner(request, context))
        finally:
            _principal.reset(reset)

    return behavior


def _guarded_stream(
    inner: Behavior, check: Callable[[Any, Any], Awaitable[Principal]]
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    """``inner`` (streaming response) behind ``check``, with the principal set while it runs."""

    async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
        principal = await check(request, context)
        # Each call runs in its own task (own context copy), so the value cannot leak to
        # another call; an async generator may finish in another context, so no reset.
        _principal.set(principal)
        result = inner(request, context)
        if inspect.isasyncgen(result):
            async for item in result:
                yield item
        else:  # a handler that writes with context.write()
            await _finish(result)

    return behavior


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Authenticates every call outside :data:`OPEN_SERVICES` and authorizes commands."""

    def __init__(self, tokens: TokenStore, open_services: frozenset[str] = OPEN_SERVICES) -> None:
        self._tokens = tokens
        self._open = open_services

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or service_of(method) in self._open:
            return handler
        # Authenticate here, before the request is read; authorize once it is.
        try:
            principal: Principal | errors.GatewayError = authenticate(
                self._tokens, handler_call_details.invocation_metadata
            )
        except errors.GatewayError as exc:
            principal = exc

        async def check(request: Any, context: Any) -> Principal:
            found = principal
            try:
                if isinstance(found, errors.GatewayError):
                    raise found
                if not handler.request_streaming:
                    authorize(found, request)
                return found
            except errors.GatewayError as exc:
                info = errors.details_of(exc.status).get("ErrorInfo")
                log.info(
                    "call_refused method=%s code=%s reason=%s peer=%s",
                    method,
                    exc.code.name,
                    getattr(info, "reason", ""),
                    context.peer(),
                )
                await errors.abort(context, exc)

        return _rewrap(handler, check)


def _rewrap(
    handler: grpc.RpcMethodHandler,  # type: ignore[type-arg]
    check: Callable[[Any, Any], Awaitable[Principal]],
) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_guarded(handler.unary_unary, check), **codecs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _guarded_stream(handler.unary_stream, check), **codecs
        )
    # Client-streaming methods: authentication only (no prgate method streams requests).
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_guarded(handler.stream_unary, check), **codecs)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        _guarded_stream(handler.stream_stream, check), **codecs
    )
