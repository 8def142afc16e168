"""Refusals as gRPC errors: the status code and the ``google.rpc`` details trailer.

The statuses themselves are built in :mod:`gateway.refusals` (no gRPC there). This module adds
what gRPC needs: :class:`GatewayError`, a refusal whose ``code`` is a ``grpc.StatusCode``, the
same builders returning it, and two ways to end a grpc.aio call with a refusal's status so
clients read the details with ``grpc_status.rpc_status.from_call``: :func:`refuse` sets the
status on the context and lets the handler return (no exception: the command RPCs' refusals,
the gateway's most frequent non-OK answer), :func:`abort` raises through ``context.abort``
(checks in interceptors, streams). Clients get the same code, details and trailing metadata
either way; a unary call ended by :func:`refuse` also carries an empty response message before
its status (grpc.aio sends one; every gRPC client discards it when the status is not OK).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NoReturn, ParamSpec

import grpc
from google.protobuf.message import Message

from gateway import refusals
from gateway.refusals import ERROR_DOMAIN, Refusal, details_of, error_info, retry_after

__all__ = [
    "ERROR_DOMAIN",
    "Context",
    "GatewayError",
    "Refusal",
    "abort",
    "details_of",
    "error",
    "error_info",
    "from_violations",
    "grpc_code",
    "invalid_argument",
    "read_model_catching_up",
    "refuse",
    "retry_after",
    "trailing_metadata",
]

# The servicer context of any of our RPCs (generated servicers are untyped; Message fits all).
Context = grpc.aio.ServicerContext[Message, Message]

_P = ParamSpec("_P")


_GRPC_CODES = {candidate.value[0]: candidate for candidate in grpc.StatusCode}
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def grpc_code(code: int) -> grpc.StatusCode:
    """The ``grpc.StatusCode`` of a ``google.rpc.Code`` value (UNKNOWN for anything else)."""
    return _GRPC_CODES.get(code, grpc.StatusCode.UNKNOWN)


class GatewayError(Refusal):
    """A refusal raised by gRPC-side code; ``code`` is its ``grpc.StatusCode``."""

    @property
    def code(self) -> grpc.StatusCode:
        return grpc_code(self.status.code)


def _as_gateway_error(build: Callable[_P, Refusal]) -> Callable[_P, GatewayError]:
    @functools.wraps(build)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> GatewayError:
        refusal = build(*args, **kwargs)
        return GatewayError(refusal.status, refusal.info)

    return wrapped


error = _as_gateway_error(refusals.error)
from_violations = _as_gateway_error(refusals.from_violations)
read_model_catching_up = _as_gateway_error(refusals.read_model_catching_up)
invalid_argument = _as_gateway_error(refusals.invalid_argument)


def trailing_metadata(exc: Refusal) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata that carries the status details (``grpc-status-details-bin``):
    the serialized ``google.rpc.Status`` (:func:`gateway.refusals.bounded`: small enough for
    a client's metadata limit), as ``grpc_status.rpc_status.to_status`` makes it."""
    return ((STATUS_DETAILS_KEY, refusals.bounded(exc.status).SerializeToString()),)


def refuse(context: Context, exc: Refusal) -> None:
    """Set ``exc``'s status and details on the call; the handler then returns (any response
    it returns is discarded). Nothing is raised: cheaper than :func:`abort` per refusal."""
    status = refusals.bounded(exc.status)
    context.set_trailing_metadata(((STATUS_DETAILS_KEY, status.SerializeToString()),))
    context.set_code(grpc_code(status.code))
    context.set_details(status.message)


async def abort(context: Context, exc: Refusal) -> NoReturn:
    """End the call with ``exc``'s status and details (grpc.aio servicer context), bounded
    as :func:`refuse` bounds them."""
    status = refusals.bounded(exc.status)
    context.set_trailing_metadata(((STATUS_DETAILS_KEY, status.SerializeToString()),))
    await context.abort(grpc_code(status.code), status.message)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises
