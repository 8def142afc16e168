"""Exceptions of the prgate client: one class per gRPC code family, with decoded details.

The gateway sends every error as a ``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer (docs/contract.md, "Errors"). :func:`error_from_rpc` turns a failed call into the matching
:class:`PrgateError` subclass, whose attributes expose the typed details: field violations
(INVALID_ARGUMENT), precondition violations (FAILED_PRECONDITION), the missing resource
(NOT_FOUND), the ErrorInfo reason and metadata (``command_id``, ``pull_request_id``) and the
RetryInfo delay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from prgate.v1 import outcome_pb2, results_pb2

DETAILS_TRAILER = "grpc-status-details-bin"
ERROR_DOMAIN = "prgate.v1"


@dataclass(frozen=True)
class FieldViolation:
    """One malformed field (``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    description: str
    reason: str = ""


@dataclass(frozen=True)
class PreconditionViolation:
    """One rule that fails on the current state (``google.rpc.PreconditionFailure.Violation``).

    ``type`` is the rule's stable reason (e.g. ``NOT_APPROVED``), ``subject`` what it is about
    (a check name or the pull request id).
    """

    type: str
    subject: str
    description: str


@dataclass(frozen=True)
class Resource:
    """The resource a NOT_FOUND is about (``google.rpc.ResourceInfo``)."""

    type: str
    name: str
    description: str = ""


class PrgateError(Exception):
    """A call to the gateway that did not succeed.

    ``code`` is the gRPC status code, ``message`` the gateway's human message; the other
    attributes are decoded from the ``google.rpc.Status`` details (empty when absent).
    ``idempotency_key`` is the key the client sent with a command (retry with it: the gateway
    answers the same command again instead of applying a second one).
    """

    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        status: status_pb2.Status | None = None,
        idempotency_key: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.status = status or status_pb2.Status(code=self.code.value[0], message=message)
        self.idempotency_key = idempotency_key
        self.details: dict[str, Message] = dict(unpack_details(self.status.details))
        self.field_violations: tuple[FieldViolation, ...] = ()
        self.precondition_violations: tuple[PreconditionViolation, ...] = ()
        self.resource: Resource | None = None
        self.reason = ""
        self.domain = ""
        self.metadata: dict[str, str] = {}
        self.retry_delay: float | None = None
        self._decode()

    def _decode(self) -> None:
        for detail in self.details.values():
            if isinstance(detail, error_details_pb2.BadRequest):
                self.field_violations = tuple(
                    FieldViolation(v.field, v.description, v.reason)
                    for v in detail.field_violations
                )
            elif isinstance(detail, error_details_pb2.PreconditionFailure):
                self.precondition_violations = tuple(
                    PreconditionViolation(v.type, v.subject, v.description)
                    for v in detail.violations
                )
            elif isinstance(detail, error_details_pb2.ResourceInfo):
                self.resource = Resource(
                    detail.resource_type, detail.resource_name, detail.description
                )
            elif isinstance(detail, error_details_pb2.ErrorInfo):
                self.reason, self.domain = detail.reason, detail.domain
                self.metadata = dict(detail.metadata)
            elif isinstance(detail, error_details_pb2.RetryInfo):
                self.retry_delay = detail.retry_delay.ToNanoseconds() / 1e9

    @property
    def command_id(self) -> str:
        """The command the error is about (from ErrorInfo metadata), or ""."""
        return self.metadata.get("command_id", "")

    @property
    def pull_request_id(self) -> str:
        return self.metadata.get("pull_request_id", "") or (
            self.resource.name if self.resource else ""
        )

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.message!r}, reason={self.reason!r})"

    def describe(self) -> str:
        """Code, message, reason and every violation, one per line (what the CLI prints)."""
        lines = [str(self)]
        if self.reason:
            lines.append(f"  reason: {self.reason}")
        lines.extend(
            f"  field {v.field}: {v.description}" + (f" ({v.reason})" if v.reason else "")
            for v in self.field_violations
        )
        lines.extend(
            f"  precondition {v.type} on {v.subject}: {v.description}"
            for v in self.precondition_violations
        )
        if self.resource is not None:
            lines.append(f"  resource {self.resource.type} {self.resource.name!r}")
        lines.extend(f"  {k}: {v}" for k, v in sorted(self.metadata.items()))
        if self.retry_delay is not None:
            lines.append(f"  retry after: {self.retry_delay:g}s")
        return "\n".join(lines)


class Rejected(PrgateError):
    """The request was refused for what it asks (exit code 1 in the CLI): do not retry as is."""


class InvalidArgument(Rejected):
    default_code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(Rejected):
    default_code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(Rejected):
    default_code = grpc.StatusCode.NOT_FOUND


class Aborted(Rejected):
    """``expected_version`` did not match, or the processor could not apply the command."""

    default_code = grpc.StatusCode.ABORTED


class AlreadyExists(Rejected):
    """The idempotency key was already used for a different command."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class OutOfRange(Rejected):
    default_code = grpc.StatusCode.OUT_OF_RANGE


class Unauthenticated(PrgateError):
    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PrgateError):
    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(PrgateError):
    """Too many calls wait on the gateway; ``retry_delay`` says when to try again."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(PrgateError):
    """The gateway or Kafka could not be reached. The client retries these (bounded)."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(PrgateError):
    """No answer in time. When the command was accepted, ``command_id`` names it: watch it."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(PrgateError):
    default_code = grpc.StatusCode.CANCELLED


class Unimplemented(PrgateError):
    default_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(PrgateError):
    """INTERNAL, UNKNOWN or DATA_LOSS: a fault on the server side."""

    default_code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[PrgateError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgument,
        FailedPrecondition,
        NotFound,
        Aborted,
        AlreadyExists,
        OutOfRange,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Unimplemented,
        Internal,
    )
}
_BY_CODE[grpc.StatusCode.UNKNOWN] = Internal
_BY_CODE[grpc.StatusCode.DATA_LOSS] = Internal

_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
    error_details_pb2.RequestInfo,
)


def unpack_details(details: Iterable[any_pb2.Any]) -> Iterable[tuple[str, Message]]:
    """The known ``google.rpc`` detail messages of a status, by message name."""
    for holder in details:
        for kind in _DETAIL_TYPES:
            if holder.Is(kind.DESCRIPTOR):  # type: ignore[arg-type]
                message = kind()
                holder.Unpack(message)
                yield kind.DESCRIPTOR.name, message


def code_of(value: int) -> grpc.StatusCode:
    for candidate in grpc.StatusCode:
        if candidate.value[0] == value:
            return candidate
    return grpc.StatusCode.UNKNOWN


def error_for(
    code: grpc.StatusCode,
    message: str,
    status: status_pb2.Status | None = None,
    *,
    idempotency_key: str = "",
) -> PrgateError:
    """The exception class of ``code``, built from a message and an optional full status."""
    cls = _BY_CODE.get(code, PrgateError)
    return cls(message, code=code, status=status, idempotency_key=idempotency_key)


def _trailer_pairs(metadata: Any) -> Iterable[tuple[str, Any]]:
    # Sync calls give a tuple of _Metadatum, grpc.aio gives a Metadata object; both iterate
    # as (key, value) pairs.
    for item in metadata or ():
        yield item[0], item[1]


def error_from_rpc(exc: grpc.RpcError, *, idempotency_key: str = "") -> PrgateError:
    """The :class:`PrgateError` of a failed sync or asyncio call, with its decoded details."""
    call: Any = exc
    code: grpc.StatusCode = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
    message = str(call.details() or "") if hasattr(call, "details") else str(exc)
    trailers = call.trailing_metadata() if hasattr(call, "trailing_metadata") else None
    status: status_pb2.Status | None = None
    for key, value in _trailer_pairs(trailers):
        if key == DETAILS_TRAILER and isinstance(value, bytes):
            parsed = status_pb2.Status.FromString(value)
            # A trailer that disagrees with the call's code is not ours (e.g. a proxy's).
            if parsed.code == code.value[0]:
                status = parsed
    return error_for(code, message, status, idempotency_key=idempotency_key)


_KIND_CODE: Mapping[int, grpc.StatusCode] = {
    outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    outcome_pb2.VIOLATION_KIND_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    outcome_pb2.VIOLATION_KIND_VERSION_CONFLICT: grpc.StatusCode.ABORTED,
    outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
}


def error_from_result(result: results_pb2.CommandResult) -> PrgateError | None:
    """The exception a REJECTED or FAILED result stands for (as a command call would raise).

    WatchCommand streams a refused command's result as a receipt instead of an error status;
    this gives the caller of :meth:`Client.wait_command` the same exceptions either way.
    """
    ids = {"command_id": result.command_id, "pull_request_id": result.pull_request_id}
    info = error_details_pb2.ErrorInfo(domain=ERROR_DOMAIN, metadata=ids)
    if result.state == outcome_pb2.COMMAND_STATE_FAILED:
        info.reason = "COMMAND_FAILED"
        message = f"the processor could not apply the command: {result.error_message}"
        return _synthetic(grpc.StatusCode.ABORTED, message, [info])
    if result.state != outcome_pb2.COMMAND_STATE_REJECTED:
        return None
    violations = list(result.violations)
    code = next(
        (
            _KIND_CODE[kind]
            for kind in _KIND_CODE
            if any(v.kind == kind for v in violations)  # first kind in docs/contract.md's order
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    chosen = [v for v in violations if _KIND_CODE.get(v.kind) == code] or violations
    info.reason = chosen[0].reason if chosen else "REJECTED"
    message = "; ".join(v.description for v in chosen) or "the command was rejected"
    details: list[Message] = [info]
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description, reason=v.reason
                    )
                    for v in chosen
                ]
            )
        )
    elif code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED):
        details.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=v.reason,
                        subject=v.subject or result.pull_request_id,
                        description=v.description,
                    )
                    for v in chosen
                ]
            )
        )
    return _synthetic(code, message, details)


def _synthetic(code: grpc.StatusCode, message: str, details: Iterable[Message]) -> PrgateError:
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return error_for(code, message, status)
