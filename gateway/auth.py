"""Bearer-token authentication and actor authorization, as a grpc.aio server interceptor.

Every call except those of the open services (health, reflection) must carry metadata
``authorization: Bearer <token>`` with a token of the token file (gateway/auth_tokens.py);
otherwise it ends UNAUTHENTICATED with ErrorInfo details. A command whose actor fields
(``author``, ``reviewer``, ``merged_by_user``, ``actor``, ``changed_by``) name someone else than
the caller's principal ends PERMISSION_DENIED, unless the caller has a role that may act for
others. Queries and WatchCommand need only a valid token.

The token is checked on the call's metadata, before its request is read, so calls without a
valid token hold no resources (:func:`refusing_handler`). The interceptor sets the caller's
principal in a context variable for the call, and :func:`caller_of` reads it: CommandService
stamps it into ``CommandEnvelope.caller`` and scopes idempotency keys with it. A token removed
from the token file also ends the streams it opened, UNAUTHENTICATED with reason
``TOKEN_REVOKED`` (:func:`revoked`; gateway/security.py watches the file).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import errors
from gateway.auth_tokens import Principal, TokenStore, token_digest
from gateway.handlers import guarded

log = logging.getLogger(__name__)

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
_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("prgate_token", default=None)


def current_principal() -> Principal | None:
    """The principal of the call being served, when authentication is on."""
    return _principal.get()


def current_token_digest() -> str | None:
    """The SHA-256 digest of the call's bearer token, when authentication is on (the tag of
    its streams in :class:`gateway.streams.OpenStreams`, to end them when it is revoked)."""
    return _token.get()


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


def revoked() -> errors.GatewayError:
    """How a stream ends when the token that opened it is no longer in the token file."""
    return unauthenticated(
        "TOKEN_REVOKED", "the bearer token of this call was removed from the token file"
    )


def _log_refusal(method: str, exc: errors.GatewayError, context: Any) -> None:
    info = errors.details_of(exc.status).get("ErrorInfo")
    log.info(
        "call_refused",
        extra={
            "method": method,
            "code": exc.code.name,
            "reason": getattr(info, "reason", ""),
            "peer": context.peer(),
        },
    )


def refusing_handler(method: str, exc: errors.GatewayError) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    """A handler that ends the call with ``exc`` without reading its request.

    grpc.aio reads the request message of a unary-request handler before it calls the
    behavior, so a call that sends headers and never a body would hold its slot (of
    ``maximum_concurrent_rpcs``) for good. A request-streaming handler is called at once with
    a lazy request iterator, which this one never reads; the cardinality on the wire is the
    client's business, the status ends the call either way.
    """

    async def refuse(_requests: Any, context: Any) -> None:
        _log_refusal(method, exc, context)
        await errors.abort(context, exc)

    return grpc.stream_unary_rpc_method_handler(refuse)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Authenticates every call outside :data:`OPEN_SERVICES` and authorizes commands.

    Authentication happens on the call's metadata, before its request is read: a call without
    a valid token is refused at once (:func:`refusing_handler`). Authorization needs the
    request, so it happens once the request arrived.
    """

    def __init__(self, tokens: TokenStore, open_services: frozenset[str] = OPEN_SERVICES) -> None:
        self._tokens = tokens
        self._open = open_services

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        method = handler_call_details.method
        if service_of(method) in self._open:
            return await continuation(handler_call_details)
        try:
            token = bearer_token(handler_call_details.invocation_metadata)
            principal = self._tokens.authenticate(token)
            if principal is None:
                raise unauthenticated("INVALID_TOKEN", "the bearer token is not valid")
        except errors.GatewayError as exc:
            # Not even looking the method up: an unknown one is no business of an anonymous
            # caller either.
            return refusing_handler(method, exc)
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        digest = token_digest(token)
        authorize_request = not handler.request_streaming

        async def check(request: Any, context: Any) -> None:
            try:
                if authorize_request:
                    authorize(principal, request)
            except errors.GatewayError as exc:
                _log_refusal(method, exc, context)
                await errors.abort(context, exc)
            # Each call runs in its own task (its own context copy): the values cannot leak
            # to another call.
            _principal.set(principal)
            _token.set(digest)

        return guarded(handler, check)
