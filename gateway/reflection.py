"""gRPC server reflection, ``grpc.reflection.v1`` and ``v1alpha``, with the protos' comments.

grpcio-reflection serves only v1alpha, answers from a descriptor pool that cannot find a method
by its full name (``grpcurl describe prgate.v1.PullRequestQueryService.ListPullRequests``:
symbol not found), and rebuilds each file with ``CopyToProto``, which drops the comments. This
servicer answers from the descriptor set that ``make generate`` writes next to the generated
code (``prgate/v1/descriptors.binpb``: protoc ``--include_imports --include_source_info``), so
clients see the files as written, comments included, and it indexes every symbol a file
declares: packages' services, methods, messages, fields, oneofs, enums, enum values and
extensions, nested ones too.

v1 and v1alpha are the same protocol under two package names (same messages, same field
numbers), so one servicer serves both with the v1alpha message classes. The health and
reflection services' own files come from their generated modules (without comments); the v1
reflection file is derived from the v1alpha one by renaming its package. Any other message
type the process loaded (the ``google.rpc`` error details) is found in its descriptor pool, so
grpcurl can print a refusal's details.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.reflection_pb2 import ServerReflectionRequest as Request
from grpc_reflection.v1alpha.reflection_pb2 import ServerReflectionResponse as Response

DESCRIPTOR_SET = "descriptors.binpb"  # in the prgate.v1 package, written by scripts/generate.py
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
V1 = "grpc.reflection.v1.ServerReflection"
SERVICE_NAMES = (V1, V1ALPHA)
_POOL = descriptor_pool.Default()
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def _file_proto(descriptor: Any) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    return proto


def reflection_v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto: the v1alpha file under the v1 package name."""
    proto = _file_proto(reflection_pb2.DESCRIPTOR)
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = "grpc.reflection.v1"
    proto.options.Clear()
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_multiple_files = True
    for message in proto.message_type:
        for one in message.field:
            one.type_name = one.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    return proto


def project_files() -> list[descriptor_pb2.FileDescriptorProto]:
    """The files of the committed descriptor set (prgate/v1 and its imports, with comments)."""
    data = (resources.files("prgate.v1") / DESCRIPTOR_SET).read_bytes()
    return list(descriptor_pb2.FileDescriptorSet.FromString(data).file)


def _message_symbols(scope: str, message: descriptor_pb2.DescriptorProto) -> Iterator[str]:
    name = f"{scope}.{message.name}"
    yield name
    for one in message.field:
        yield f"{name}.{one.name}"
    for one in message.extension:
        yield f"{name}.{one.name}"
    for oneof in message.oneof_decl:
        yield f"{name}.{oneof.name}"
    for nested in message.nested_type:
        yield from _message_symbols(name, nested)
    for enum in message.enum_type:
        yield from _enum_symbols(name, enum)


def _enum_symbols(scope: str, enum: descriptor_pb2.EnumDescriptorProto) -> Iterator[str]:
    yield f"{scope}.{enum.name}"
    for value in enum.value:  # enum values are siblings of their enum (C++ scoping)
        yield f"{scope}.{value.name}"


def symbols(proto: descriptor_pb2.FileDescriptorProto) -> Iterator[str]:
    """Every fully-qualified name ``proto`` declares."""
    scope = proto.package
    prefix = f"{scope}." if scope else ""
    for message in proto.message_type:
        yield from _message_symbols(scope, message)  # "" scope: ".Name", stripped by add()
    for enum in proto.enum_type:
        yield from _enum_symbols(scope, enum)
    for extension in proto.extension:
        yield f"{prefix}{extension.name}"
    for service in proto.service:
        yield f"{prefix}{service.name}"
        for method in service.method:
            yield f"{prefix}{service.name}.{method.name}"


@dataclass
class Descriptors:
    """Files by name (serialized as they are served), and which file declares each symbol."""

    files: dict[str, descriptor_pb2.FileDescriptorProto] = field(default_factory=dict)
    by_symbol: dict[str, str] = field(default_factory=dict)
    extensions: dict[tuple[str, int], str] = field(default_factory=dict)
    _serialized: dict[str, bytes] = field(default_factory=dict)

    def add(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        """Add a file; the first file of a name wins (the set's own, with comments)."""
        if proto.name in self.files:
            return
        self.files[proto.name] = proto
        self._serialized[proto.name] = proto.SerializeToString()
        for symbol in symbols(proto):
            self.by_symbol.setdefault(symbol.lstrip("."), proto.name)
        for extension in _all_extensions(proto):
            self.extensions[(extension.extendee.lstrip("."), extension.number)] = proto.name

    def add_from_pool(self, descriptor: Any) -> str:
        """Add a file of the process's descriptor pool and its imports; returns its name."""
        for dependency in descriptor.dependencies:
            self.add_from_pool(dependency)
        self.add(_file_proto(descriptor))
        return str(descriptor.name)

    def file_of_symbol(self, symbol: str) -> str | None:
        """The file declaring ``symbol``: ours, else any message type the process loaded (the
        ``google.rpc`` error details, so grpcurl can print a refusal's details)."""
        found = self.by_symbol.get(symbol)
        if found is None:
            try:
                found = self.add_from_pool(_POOL.FindFileContainingSymbol(symbol))
            except KeyError:
                return None
        return found

    def file_named(self, name: str) -> str | None:
        """``name`` if it is one of ours or one the process loaded."""
        if name not in self.files:
            try:
                self.add_from_pool(_POOL.FindFileByName(name))
            except KeyError:
                return None
        return name

    def with_dependencies(self, name: str) -> list[bytes]:
        """The file ``name`` first, then every file it imports, transitively."""
        order: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop()
            if current in order or current not in self.files:
                continue
            order.append(current)
            pending.extend(reversed(self.files[current].dependency))
        return [self._serialized[n] for n in order]

    @classmethod
    def of_gateway(cls) -> Descriptors:
        """The project's files (with comments), health, and both reflection packages."""
        found = cls()
        for proto in project_files():
            found.add(proto)
        found.add(_file_proto(health_pb2.DESCRIPTOR))
        found.add(_file_proto(reflection_pb2.DESCRIPTOR))
        found.add(reflection_v1_file())
        return found


def _all_extensions(
    proto: descriptor_pb2.FileDescriptorProto,
) -> Iterator[descriptor_pb2.FieldDescriptorProto]:
    yield from proto.extension
    pending = list(proto.message_type)
    while pending:
        message = pending.pop()
        yield from message.extension
        pending.extend(message.nested_type)


class ReflectionService:
    """Answers ServerReflectionInfo from :class:`Descriptors` for the services it lists."""

    def __init__(self, descriptors: Descriptors, service_names: Iterable[str]) -> None:
        self._descriptors = descriptors
        self._services = sorted(set(service_names))

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[Request], _context: Any
    ) -> AsyncIterator[Response]:
        async for request in requests:
            yield self.answer(request)

    def answer(self, request: Request) -> Response:
        """The response to one request (a NOT_FOUND error response for an unknown name)."""
        found = self._descriptors
        kind = request.WhichOneof("message_request")
        if kind == "list_services":
            return Response(
                original_request=request,
                list_services_response=reflection_pb2.ListServiceResponse(
                    service=[reflection_pb2.ServiceResponse(name=n) for n in self._services]
                ),
            )
        if kind == "all_extension_numbers_of_type":
            base = request.all_extension_numbers_of_type.lstrip(".")
            if base not in found.by_symbol:
                return _error(request, grpc.StatusCode.NOT_FOUND, f"type {base} not found")
            numbers = sorted(n for (extendee, n) in found.extensions if extendee == base)
            return Response(
                original_request=request,
                all_extension_numbers_response=reflection_pb2.ExtensionNumberResponse(
                    base_type_name=base, extension_number=numbers
                ),
            )
        name: str | None
        if kind == "file_by_filename":
            name = found.file_named(request.file_by_filename)
            wanted = f"file {request.file_by_filename}"
        elif kind == "file_containing_symbol":
            symbol = request.file_containing_symbol.lstrip(".")
            name = found.file_of_symbol(symbol)
            wanted = f"symbol {symbol}"
        elif kind == "file_containing_extension":
            asked = request.file_containing_extension
            extendee = asked.containing_type.lstrip(".")
            name = found.extensions.get((extendee, asked.extension_number))
            wanted = f"extension {asked.extension_number} of {extendee}"
        else:
            return _error(request, grpc.StatusCode.INVALID_ARGUMENT, "unknown request kind")
        if name is None:
            return _error(request, grpc.StatusCode.NOT_FOUND, f"{wanted} not found")
        return Response(
            original_request=request,
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=found.with_dependencies(name)
            ),
        )


def _error(request: Request, code: grpc.StatusCode, message: str) -> Response:
    return Response(
        original_request=request,
        error_response=reflection_pb2.ErrorResponse(
            error_code=code.value[0], error_message=message
        ),
    )


def add_reflection(server: grpc.aio.Server, served: Sequence[str]) -> ReflectionService:
    """Serve reflection (v1 and v1alpha) on ``server``, listing ``served`` and itself."""
    service = ReflectionService(Descriptors.of_gateway(), [*served, *SERVICE_NAMES])
    behavior = grpc.stream_stream_rpc_method_handler(
        service.ServerReflectionInfo,
        request_deserializer=Request.FromString,
        response_serializer=Response.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": behavior})
            for name in SERVICE_NAMES
        )
    )
    return service
