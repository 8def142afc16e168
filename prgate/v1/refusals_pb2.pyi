import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from prgate.v1 import commands_pb2 as _commands_pb2
from prgate.v1 import outcome_pb2 as _outcome_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommandRefusal(_message.Message):
    __slots__ = ("command", "code", "code_name", "message", "reason", "violations", "refused_at", "trace_id")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    command: _commands_pb2.CommandEnvelope
    code: int
    code_name: str
    message: str
    reason: str
    violations: _containers.RepeatedCompositeFieldContainer[_outcome_pb2.Violation]
    refused_at: _timestamp_pb2.Timestamp
    trace_id: str
    def __init__(self, command: _Optional[_Union[_commands_pb2.CommandEnvelope, _Mapping]] = ..., code: _Optional[int] = ..., code_name: _Optional[str] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[_outcome_pb2.Violation, _Mapping]]] = ..., refused_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ...) -> None: ...
