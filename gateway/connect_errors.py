"""Connect errors of the gateway's gRPC statuses (the error half of gateway/connect_http.py).

A handler's abort (:class:`Aborted`: a gRPC status code, message and trailing metadata with the
``google.rpc.Status`` in ``grpc-status-details-bin``) becomes a :class:`ConnectError` with the
Connect code of the same name and each detail as a Connect error detail (``type``, base64
``value`` and, for the ``google.rpc`` error details, the message as JSON in ``debug``).
:data:`CODECS` are connectrpc's google.protobuf codecs whose undecodable request bodies are
refused INVALID_ARGUMENT with ``MALFORMED_REQUEST``, as over gRPC.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.codec import Codec
from connectrpc.compat import google_protobuf_codecs
from connectrpc.errors import ConnectError, ErrorDetail
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from protobuf import Registry
from protobuf.wkt import Any as PyAny
from protobuf.wkt import FileDescriptorSet
from protobuf.wkt.google.protobuf import descriptor_pb

from gateway import refusals
from gateway.errors import STATUS_DETAILS_KEY, grpc_code
from gateway.refusals import Refusal


class Aborted(Exception):
    """Raised by :meth:`ConnectServicerContext.abort`: the call ends with this status."""

    def __init__(
        self, code: grpc.StatusCode, message: str, trailing: Sequence[tuple[str, Any]]
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailing = tuple(trailing)


def connect_code(code: grpc.StatusCode) -> Code:
    """The Connect code of a gRPC status code (the same names; CANCELLED is ``canceled``)."""
    if code == grpc.StatusCode.CANCELLED:
        return Code.CANCELED
    return Code[code.name] if code.name in Code.__members__ else Code.UNKNOWN


def _json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    # protoc fills json_name in descriptor sets; FileDescriptor.CopyToProto leaves it empty.
    for message in messages:
        for field_proto in message.field:
            first, *rest = field_proto.name.split("_")
            field_proto.json_name = first + "".join(part[:1].upper() + part[1:] for part in rest)
        _json_names(message.nested_type)


def _as_py_file(file: FileDescriptor) -> descriptor_pb.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    _json_names(proto.message_type)
    return descriptor_pb.FileDescriptorProto.from_binary(proto.SerializeToString())


def _with_dependencies(file: FileDescriptor) -> list[FileDescriptor]:
    """``file`` and every file it imports, transitively, dependencies first."""
    ordered: list[FileDescriptor] = []

    def visit(current: FileDescriptor) -> None:
        if any(seen.name == current.name for seen in ordered):
            return
        for dependency in current.dependencies:
            visit(dependency)
        ordered.append(current)

    visit(file)
    return ordered


def _details_registry() -> Registry:
    """protobuf-py descriptors of the ``google.rpc`` error details, for their JSON form."""
    files = [_as_py_file(f) for f in _with_dependencies(error_details_pb2.DESCRIPTOR)]
    return FileDescriptorSet(file=files).to_registry()


_DETAILS = _details_registry()


def error_details(status: status_pb2.Status) -> list[ErrorDetail]:
    """The status's details as Connect error details; a ``google.rpc`` one also as JSON."""
    details = []
    for packed in status.details:
        raw = PyAny(type_url=packed.type_url, value=packed.value)
        desc = _DETAILS.message(packed.type_url.rpartition("/")[2])
        message = raw.unpack(desc) if desc is not None else None
        details.append(ErrorDetail(message if message is not None else raw))
    return details


def refusal_error(refusal: Refusal) -> ConnectError:
    """The Connect error of one of the gateway's refusals (code, message, details)."""
    status = refusal.status
    return ConnectError(connect_code(grpc_code(status.code)), status.message, error_details(status))


class StrictCodec:
    """A google.protobuf codec of connectrpc whose undecodable request bodies end the call
    INVALID_ARGUMENT with BadRequest details (reason ``MALFORMED_REQUEST``), as over gRPC
    (gateway/malformed.py), instead of the library's bare error."""

    def __init__(self, inner: Codec) -> None:
        self._inner = inner

    def name(self) -> str:
        return self._inner.name()

    def encode(self, message: Any) -> bytes:
        return self._inner.encode(message)

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        try:
            return self._inner.decode(data, message_class)
        except (DecodeError, json_format.ParseError, ValueError, TypeError) as exc:
            refusal = refusals.invalid_argument(
                "",
                "MALFORMED_REQUEST",
                f"the request body is not a valid {message_class.DESCRIPTOR.full_name}"
                f" message ({self.name()})",
            )
            raise refusal_error(refusal) from exc


CODECS = [StrictCodec(codec) for codec in google_protobuf_codecs()]


def connect_error(aborted: Aborted) -> ConnectError:
    """The Connect error of a gRPC status with its ``grpc-status-details-bin`` details."""
    status = status_pb2.Status()
    for key, value in aborted.trailing:
        if key == STATUS_DETAILS_KEY:
            raw = value if isinstance(value, bytes) else base64.b64decode(value)
            status.ParseFromString(raw)
    return ConnectError(connect_code(aborted.code), aborted.message, error_details(status))


# Connect's HTTP-status-to-code mapping, for an error answer without a Connect error body.
_HTTP_CODES = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    429: grpc.StatusCode.UNAVAILABLE,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.UNAVAILABLE,
}


def connect_answer_code(status: int, body: bytes) -> grpc.StatusCode:
    """The gRPC code of an HTTP answer of the Connect port (``body``: its first bytes): the
    ``code`` of its Connect error (the body of a unary answer, a stream's end frame;
    ``invalid_argument`` → INVALID_ARGUMENT), OK for a 200 without one, else Connect's
    mapping of the HTTP status (415 and others: UNKNOWN)."""
    try:
        if status == 200:  # a stream's end frame (flag 0x02) may carry an error
            if len(body) < 5 or not body[0] & 0x02:
                return grpc.StatusCode.OK
            error = json.loads(body[5:]).get("error")
            if error is None:
                return grpc.StatusCode.OK
            name = str(error["code"]).upper()
        else:
            name = str(json.loads(body)["code"]).upper()
    except (ValueError, KeyError, TypeError, AttributeError):
        return _HTTP_CODES.get(status, grpc.StatusCode.UNKNOWN)
    if name == "CANCELED":
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode[name] if name in grpc.StatusCode.__members__ else grpc.StatusCode.UNKNOWN
