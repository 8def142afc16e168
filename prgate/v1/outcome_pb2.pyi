from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommandState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_STATE_UNSPECIFIED: _ClassVar[CommandState]
    COMMAND_STATE_ACCEPTED: _ClassVar[CommandState]
    COMMAND_STATE_SUCCEEDED: _ClassVar[CommandState]
    COMMAND_STATE_REJECTED: _ClassVar[CommandState]
    COMMAND_STATE_FAILED: _ClassVar[CommandState]

class ViolationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIOLATION_KIND_UNSPECIFIED: _ClassVar[ViolationKind]
    VIOLATION_KIND_INVALID_ARGUMENT: _ClassVar[ViolationKind]
    VIOLATION_KIND_FAILED_PRECONDITION: _ClassVar[ViolationKind]
    VIOLATION_KIND_NOT_FOUND: _ClassVar[ViolationKind]
    VIOLATION_KIND_VERSION_CONFLICT: _ClassVar[ViolationKind]
    VIOLATION_KIND_ALREADY_EXISTS: _ClassVar[ViolationKind]
COMMAND_STATE_UNSPECIFIED: CommandState
COMMAND_STATE_ACCEPTED: CommandState
COMMAND_STATE_SUCCEEDED: CommandState
COMMAND_STATE_REJECTED: CommandState
COMMAND_STATE_FAILED: CommandState
VIOLATION_KIND_UNSPECIFIED: ViolationKind
VIOLATION_KIND_INVALID_ARGUMENT: ViolationKind
VIOLATION_KIND_FAILED_PRECONDITION: ViolationKind
VIOLATION_KIND_NOT_FOUND: ViolationKind
VIOLATION_KIND_VERSION_CONFLICT: ViolationKind
VIOLATION_KIND_ALREADY_EXISTS: ViolationKind

class Violation(_message.Message):
    __slots__ = ("kind", "reason", "field", "subject", "description")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    kind: ViolationKind
    reason: str
    field: str
    subject: str
    description: str
    def __init__(self, kind: _Optional[_Union[ViolationKind, str]] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ..., subject: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ProcessedCommand(_message.Message):
    __slots__ = ("command_id", "state", "version", "violations", "first_version", "fingerprint")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    FIRST_VERSION_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    state: CommandState
    version: int
    violations: _containers.RepeatedCompositeFieldContainer[Violation]
    first_version: int
    fingerprint: bytes
    def __init__(self, command_id: _Optional[str] = ..., state: _Optional[_Union[CommandState, str]] = ..., version: _Optional[int] = ..., violations: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ..., first_version: _Optional[int] = ..., fingerprint: _Optional[bytes] = ...) -> None: ...
