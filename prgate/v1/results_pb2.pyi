import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from prgate.v1 import events_pb2 as _events_pb2
from prgate.v1 import outcome_pb2 as _outcome_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommandResult(_message.Message):
    __slots__ = ("command_id", "pull_request_id", "state", "version", "events", "violations", "error_message", "completed_at", "duplicate", "command_type")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_TYPE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    pull_request_id: str
    state: _outcome_pb2.CommandState
    version: int
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.EventEnvelope]
    violations: _containers.RepeatedCompositeFieldContainer[_outcome_pb2.Violation]
    error_message: str
    completed_at: _timestamp_pb2.Timestamp
    duplicate: bool
    command_type: str
    def __init__(self, command_id: _Optional[str] = ..., pull_request_id: _Optional[str] = ..., state: _Optional[_Union[_outcome_pb2.CommandState, str]] = ..., version: _Optional[int] = ..., events: _Optional[_Iterable[_Union[_events_pb2.EventEnvelope, _Mapping]]] = ..., violations: _Optional[_Iterable[_Union[_outcome_pb2.Violation, _Mapping]]] = ..., error_message: _Optional[str] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duplicate: _Optional[bool] = ..., command_type: _Optional[str] = ...) -> None: ...
