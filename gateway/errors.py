"""gRPC errors with ``google.rpc`` details, built from domain violations and gateway failures.

Every error a client can cause or observe goes through :class:`GatewayError`, which carries a
full ``google.rpc.Status``: the code of DESIGN.md's table, a human message, and typed details
(BadRequest, PreconditionFailure, ResourceInfo, ErrorInfo, RetryInfo). Servicers turn it into
the call's status with :func:`abort`, so clients read the details with
``grpc_status.rpc_status.from_call``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from prgate.v1 import outcome_pb2

ERROR_DOMAIN = "prgate.v1"

# When one command breaks rules of several kinds, the client sees the most fundamental one.
_KIND_ORDER = (
    outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
    outcome_pb2.VIOLATION_KIND_ALREADY_EXISTS,
    outcome_pb2.VIOLATION_KIND_NOT_FOUND,
    outcome_pb2.VIOLATION_KIND_VERSION_CONFLICT,
    outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION,
)
_KIND_CODE = {
    outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    outcome_pb2.VIOLATION_KIND_NOT_FOUND: code_pb2.NOT_FOUND,
    outcome_pb2.VIOLATION_KIND_VERSION_CONFLICT: code_pb2.ABORTED,
    outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    outcome_pb2.VIOLATION_KIND_ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
}


class GatewayError(Exception):
    """A call outcome that is not OK, with its ``google.rpc.Status``."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status

    @property
    def code(self) -> grpc.StatusCode:
        return _grpc_code(self.status.code)


def _grpc_code(code: int) -> grpc.StatusCode:
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return candidate
    return grpc.StatusCode.UNKNOWN


def _pack(details: Iterable[Message]) -> list[any_pb2.Any]:
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return packed


def error(code: int, message: str, *details: Message) -> GatewayError:
    """A GatewayError with a ``google.rpc.Code`` value, a message and typed details."""
    return GatewayError(status_pb2.Status(code=code, message=message, details=_pack(details)))


def error_info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(
        reason=reason, domain=ERROR_DOMAIN, metadata={k: v for k, v in metadata.items() if v}
    )


def retry_after(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def from_violations(
    violations: Iterable[outcome_pb2.Violation],
    *,
    command_id: str = "",
    pull_request_id: str = "",
) -> GatewayError:
    """Map domain violations onto one status: the most fundamental kind decides the code."""
    items = list(violations)
    if not items:
        raise ValueError("from_violations needs at least one violation")
    kind = (
        next(k for k in _KIND_ORDER if any(v.kind == k for v in items))
        if any(v.kind in _KIND_CODE for v in items)
        else outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION
    )
    chosen = [v for v in items if v.kind == kind] or items
    ids = {"command_id": command_id, "pull_request_id": pull_request_id}
    message = "; ".join(v.description for v in chosen)
    details: list[Message] = [error_info(chosen[0].reason, **ids)]
    if kind == outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT:
        details.insert(
            0,
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description, reason=v.reason
                    )
                    for v in chosen
                ]
            ),
        )
    elif kind == outcome_pb2.VIOLATION_KIND_NOT_FOUND:
        details.insert(
            0,
            error_details_pb2.ResourceInfo(
                resource_type="prgate.v1.PullRequest",
                resource_name=pull_request_id,
                description=message,
            ),
        )
    else:
        details.insert(
            0,
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=v.reason,
                        subject=v.subject or pull_request_id,
                        description=v.description,
                    )
                    for v in chosen
                ]
            ),
        )
    return error(_KIND_CODE.get(kind, code_pb2.FAILED_PRECONDITION), message, *details)


def read_model_catching_up() -> GatewayError:
    """UNAVAILABLE while the read model has not reached the end offsets seen at start."""
    return error(
        code_pb2.UNAVAILABLE,
        "the gateway is still reading the current state of pull requests; retry shortly",
        error_info("READ_MODEL_CATCHING_UP"),
        retry_after(1.0),
    )


def idempotency_key_reused(command_id: str, pull_request_id: str) -> GatewayError:
    """ALREADY_EXISTS: the idempotency key (its command id) was used for another command."""
    return error(
        code_pb2.ALREADY_EXISTS,
        "this idempotency key was already used for a different command",
        error_info(
            "IDEMPOTENCY_KEY_REUSED", command_id=command_id, pull_request_id=pull_request_id
        ),
    )


def invalid_argument(field: str, reason: str, description: str) -> GatewayError:
    """One field violation as INVALID_ARGUMENT with BadRequest details."""
    violation = outcome_pb2.Violation(
        kind=outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
        reason=reason,
        field=field,
        description=description,
    )
    return from_violations([violation])


def trailing_metadata(exc: GatewayError) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata that carries the status details (``grpc-status-details-bin``)."""
    return tuple(rpc_status.to_status(exc.status).trailing_metadata)


async def abort(context: Any, exc: GatewayError) -> NoReturn:
    """End the call with ``exc``'s status and details (grpc.aio servicer context)."""
    context.set_trailing_metadata(trailing_metadata(exc))
    await context.abort(exc.code, exc.status.message)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def details_of(status: status_pb2.Status) -> Mapping[str, Message]:
    """Unpack the typed details of a status by message name (for tests and clients)."""
    out: dict[str, Message] = {}
    for holder in status.details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.ResourceInfo,
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
        ):
            if holder.Is(kind.DESCRIPTOR):
                message = kind()
                holder.Unpack(message)
                out[kind.DESCRIPTOR.name] = message
    return out
