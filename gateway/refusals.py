"""Refusals: a call's non-OK outcome as a ``google.rpc.Status``, without any transport.

A :class:`Refusal` carries the full status a client gets: the ``google.rpc.Code`` of the
error table in docs/contract.md, a human message, and typed details (BadRequest,
PreconditionFailure, ResourceInfo,
ErrorInfo, RetryInfo). Admission (gateway/admission.py) raises refusals; a transport turns one
into its own error: the gRPC servicers through :mod:`gateway.errors` (status code plus the
``grpc-status-details-bin`` trailer), an HTTP/JSON server would send the same status as JSON.
Nothing here imports gRPC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf import any_pb2, duration_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

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
_DETAIL_TYPES = (
    error_details_pb2.BadRequest,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
)
# What a status may weigh where a client reads it: over gRPC its message (grpc-message,
# percent-encoded: up to 3 bytes per UTF-8 byte) and its serialized form
# (grpc-status-details-bin, base64: 4 bytes per 3) are trailers, and gRPC clients refuse
# trailers past their metadata limit with RESOURCE_EXHAUSTED "received metadata size exceeds
# ...": for good past 16 KiB, and past the 8 KiB soft limit now and then (at random, growing
# towards the hard one). A refusal that echoes a huge id (a 60,000-character pull request id,
# refused INVALID_ARGUMENT) would reach the client as that instead. Bounded (:func:`bounded`),
# the two trailers weigh at most 3 x 512 + 4/3 x 2048 bytes, about 4.3 KiB: under the soft limit.
MAX_MESSAGE_BYTES = 512
MAX_STATUS_BYTES = 2048
MAX_DETAIL_CHARS = 200


class Refusal(Exception):
    """A call outcome that is not OK, with its ``google.rpc.Status`` in ``status``.

    ``info`` is the status's ErrorInfo detail as built (None: read from ``status`` when
    needed), so the log line and the refusal record need not unpack the details again.
    """

    def __init__(
        self, status: status_pb2.Status, info: error_details_pb2.ErrorInfo | None = None
    ) -> None:
        super().__init__(status.message)
        self.status = status
        self._info = info

    @property
    def info(self) -> error_details_pb2.ErrorInfo | None:
        """The ErrorInfo detail of ``status``; None when it has none."""
        if self._info is None:
            found = details_of(self.status).get("ErrorInfo")
            self._info = found if isinstance(found, error_details_pb2.ErrorInfo) else None
        return self._info

    @property
    def code_name(self) -> str:
        """The status code's ``google.rpc.Code`` name, e.g. ``INVALID_ARGUMENT``."""
        try:
            name: str = code_pb2.Code.Name(self.status.code)
        except ValueError:  # not a google.rpc.Code value
            return "UNKNOWN"
        return name

    def ids(self) -> dict[str, str]:
        """The ``command_id`` / ``pull_request_id`` its ErrorInfo names (absent ones left out)."""
        info = self.info
        return dict(info.metadata) if info is not None else {}


def _pack(details: Iterable[Message]) -> list[any_pb2.Any]:
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return packed


def error(code: int, message: str, *details: Message) -> Refusal:
    """A Refusal with a ``google.rpc.Code`` value, a message and typed details."""
    info = next((d for d in details if isinstance(d, error_details_pb2.ErrorInfo)), None)
    return Refusal(status_pb2.Status(code=code, message=message, details=_pack(details)), info)


def error_info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    """ErrorInfo of domain ``prgate.v1``; empty metadata values are left out."""
    return error_details_pb2.ErrorInfo(
        reason=reason, domain=ERROR_DOMAIN, metadata={k: v for k, v in metadata.items() if v}
    )


def retry_after(seconds: float) -> error_details_pb2.RetryInfo:
    """RetryInfo asking the client to wait ``seconds`` before retrying."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def from_violations(
    violations: Iterable[outcome_pb2.Violation],
    *,
    command_id: str = "",
    pull_request_id: str = "",
) -> Refusal:
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


def read_model_catching_up() -> Refusal:
    """UNAVAILABLE while the read model has not reached the end offsets seen at start."""
    return error(
        code_pb2.UNAVAILABLE,
        "the gateway is still reading the current state of pull requests; retry shortly",
        error_info("READ_MODEL_CATCHING_UP"),
        retry_after(1.0),
    )


def idempotency_key_reused(command_id: str, pull_request_id: str) -> Refusal:
    """ALREADY_EXISTS: the idempotency key (its command id) was used for another command."""
    return error(
        code_pb2.ALREADY_EXISTS,
        "this idempotency key was already used for a different command",
        error_info(
            "IDEMPOTENCY_KEY_REUSED", command_id=command_id, pull_request_id=pull_request_id
        ),
    )


def invalid_argument(field: str, reason: str, description: str) -> Refusal:
    """One field violation as INVALID_ARGUMENT with BadRequest details."""
    violation = outcome_pb2.Violation(
        kind=outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
        reason=reason,
        field=field,
        description=description,
    )
    return from_violations([violation])


def bounded(status: status_pb2.Status) -> status_pb2.Status:
    """``status`` itself when its message has at most :data:`MAX_MESSAGE_BYTES` bytes of UTF-8
    and it serializes to at most :data:`MAX_STATUS_BYTES` bytes; else a copy whose message is
    cut there (at a character boundary) and whose details' strings (ids, field names,
    descriptions, metadata values) are cut to :data:`MAX_DETAIL_CHARS` characters (a cut
    string ends with "…"); if that is still too big, only its ErrorInfo and RetryInfo details
    are kept, and if even that is, ErrorInfo without its metadata. Code and detail types of
    what is kept stay."""
    if len(status.message.encode()) <= MAX_MESSAGE_BYTES and status.ByteSize() <= MAX_STATUS_BYTES:
        return status
    out = status_pb2.Status(code=status.code, message=_cut_bytes(status.message, MAX_MESSAGE_BYTES))
    for holder in status.details:
        kind = next((k for k in _DETAIL_TYPES if holder.Is(k.DESCRIPTOR)), None)
        if kind is None:  # not ours: kept if it is small
            if holder.ByteSize() <= MAX_DETAIL_CHARS:
                out.details.append(holder)
            continue
        detail = kind()
        holder.Unpack(detail)
        _cut_strings(detail)
        out.details.add().Pack(detail)
    if out.ByteSize() > MAX_STATUS_BYTES:
        kept = [
            d
            for d in out.details
            if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)
            or d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
        ]
        del out.details[:]
        out.details.extend(kept)
    if out.ByteSize() > MAX_STATUS_BYTES:  # an ErrorInfo with a great many metadata entries
        for holder in out.details:
            if holder.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                holder.Unpack(info)
                info.metadata.clear()
                holder.Pack(info)
    return out


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, at a character boundary, ending with
    "…" (3 bytes) when cut."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"


def _cut_strings(message: Message) -> None:
    """Cut every string of ``message`` (and of the messages in it) to MAX_DETAIL_CHARS."""
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [_cut(v, MAX_DETAIL_CHARS) for v in value]
            else:
                setattr(message, field.name, _cut(value, MAX_DETAIL_CHARS))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                items = {_cut(k, MAX_DETAIL_CHARS): v for k, v in value.items()}
                value.clear()
                for key, item in items.items():
                    if isinstance(item, str):
                        value[key] = _cut(item, MAX_DETAIL_CHARS)
                    else:
                        value[key].CopyFrom(item)
                        _cut_strings(value[key])
            elif field.is_repeated:
                for item in value:
                    _cut_strings(item)
            else:
                _cut_strings(value)


def details_of(status: status_pb2.Status) -> Mapping[str, Message]:
    """Unpack the typed details of a status by message name (for tests and clients)."""
    out: dict[str, Message] = {}
    for holder in status.details:
        for kind in _DETAIL_TYPES:
            if holder.Is(kind.DESCRIPTOR):
                message = kind()
                holder.Unpack(message)
                out[kind.DESCRIPTOR.name] = message
    return out
