from prgate.v1 import commands_pb2 as _commands_pb2
from prgate.v1 import outcome_pb2 as _outcome_pb2
from prgate.v1 import results_pb2 as _results_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResponseMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESPONSE_MODE_UNSPECIFIED: _ClassVar[ResponseMode]
    RESPONSE_MODE_ACCEPTED: _ClassVar[ResponseMode]
    RESPONSE_MODE_COMPLETED: _ClassVar[ResponseMode]
RESPONSE_MODE_UNSPECIFIED: ResponseMode
RESPONSE_MODE_ACCEPTED: ResponseMode
RESPONSE_MODE_COMPLETED: ResponseMode

class CommandOptions(_message.Message):
    __slots__ = ("response_mode", "idempotency_key", "expected_version", "consistency_token")
    RESPONSE_MODE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    response_mode: ResponseMode
    idempotency_key: str
    expected_version: int
    consistency_token: str
    def __init__(self, response_mode: _Optional[_Union[ResponseMode, str]] = ..., idempotency_key: _Optional[str] = ..., expected_version: _Optional[int] = ..., consistency_token: _Optional[str] = ...) -> None: ...

class CommandReceipt(_message.Message):
    __slots__ = ("command_id", "pull_request_id", "state", "result", "consistency_token")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    pull_request_id: str
    state: _outcome_pb2.CommandState
    result: _results_pb2.CommandResult
    consistency_token: str
    def __init__(self, command_id: _Optional[str] = ..., pull_request_id: _Optional[str] = ..., state: _Optional[_Union[_outcome_pb2.CommandState, str]] = ..., result: _Optional[_Union[_results_pb2.CommandResult, _Mapping]] = ..., consistency_token: _Optional[str] = ...) -> None: ...

class OpenPullRequestRequest(_message.Message):
    __slots__ = ("command", "options")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    command: _commands_pb2.OpenPullRequest
    options: CommandOptions
    def __init__(self, command: _Optional[_Union[_commands_pb2.OpenPullRequest, _Mapping]] = ..., options: _Optional[_Union[CommandOptions, _Mapping]] = ...) -> None: ...

class OpenPullRequestResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: CommandReceipt
    def __init__(self, receipt: _Optional[_Union[CommandReceipt, _Mapping]] = ...) -> None: ...

class ChangePullRequestTitleRequest(_message.Message):
    __slots__ = ("command", "options")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    command: _commands_pb2.ChangePullRequestTitle
    options: CommandOptions
    def __init__(self, command: _Optional[_Union[_commands_pb2.ChangePullRequestTitle, _Mapping]] = ..., options: _Optional[_Union[CommandOptions, _Mapping]] = ...) -> None: ...

class ChangePullRequestTitleResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: CommandReceipt
    def __init__(self, receipt: _Optional[_Union[CommandReceipt, _Mapping]] = ...) -> None: ...

class ApprovePullRequestRequest(_message.Message):
    __slots__ = ("command", "options")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    command: _commands_pb2.ApprovePullRequest
    options: CommandOptions
    def __init__(self, command: _Optional[_Union[_commands_pb2.ApprovePullRequest, _Mapping]] = ..., options: _Optional[_Union[CommandOptions, _Mapping]] = ...) -> None: ...

class ApprovePullRequestResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: CommandReceipt
    def __init__(self, receipt: _Optional[_Union[CommandReceipt, _Mapping]] = ...) -> None: ...

class RecordCheckResultRequest(_message.Message):
    __slots__ = ("command", "options")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    command: _commands_pb2.RecordCheckResult
    options: CommandOptions
    def __init__(self, command: _Optional[_Union[_commands_pb2.RecordCheckResult, _Mapping]] = ..., options: _Optional[_Union[CommandOptions, _Mapping]] = ...) -> None: ...

class RecordCheckResultResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: CommandReceipt
    def __init__(self, receipt: _Optional[_Union[CommandReceipt, _Mapping]] = ...) -> None: ...

class MergePullRequestRequest(_message.Message):
    __slots__ = ("command", "options")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    command: _commands_pb2.MergePullRequest
    options: CommandOptions
    def __init__(self, command: _Optional[_Union[_commands_pb2.MergePullRequest, _Mapping]] = ..., options: _Optional[_Union[CommandOptions, _Mapping]] = ...) -> None: ...

class MergePullRequestResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: CommandReceipt
    def __init__(self, receipt: _Optional[_Union[CommandReceipt, _Mapping]] = ...) -> None: ...

class ClosePullRequestRequest(_message.Message):
    __slots__ = ("command", "options")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    command: _commands_pb2.ClosePullRequest
    options: CommandOptions
    def __init__(self, command: _Optional[_Union[_commands_pb2.ClosePullRequest, _Mapping]] = ..., options: _Optional[_Union[CommandOptions, _Mapping]] = ...) -> None: ...

class ClosePullRequestResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: CommandReceipt
    def __init__(self, receipt: _Optional[_Union[CommandReceipt, _Mapping]] = ...) -> None: ...

class ReopenPullRequestRequest(_message.Message):
    __slots__ = ("command", "options")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    command: _commands_pb2.ReopenPullRequest
    options: CommandOptions
    def __init__(self, command: _Optional[_Union[_commands_pb2.ReopenPullRequest, _Mapping]] = ..., options: _Optional[_Union[CommandOptions, _Mapping]] = ...) -> None: ...

class ReopenPullRequestResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: CommandReceipt
    def __init__(self, receipt: _Optional[_Union[CommandReceipt, _Mapping]] = ...) -> None: ...

class RevertPullRequestRequest(_message.Message):
    __slots__ = ("command", "options")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    command: _commands_pb2.RevertPullRequest
    options: CommandOptions
    def __init__(self, command: _Optional[_Union[_commands_pb2.RevertPullRequest, _Mapping]] = ..., options: _Optional[_Union[CommandOptions, _Mapping]] = ...) -> None: ...

class RevertPullRequestResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: CommandReceipt
    def __init__(self, receipt: _Optional[_Union[CommandReceipt, _Mapping]] = ...) -> None: ...

class WatchCommandRequest(_message.Message):
    __slots__ = ("command_id",)
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    def __init__(self, command_id: _Optional[str] = ...) -> None: ...

class WatchCommandResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: CommandReceipt
    def __init__(self, receipt: _Optional[_Union[CommandReceipt, _Mapping]] = ...) -> None: ...
