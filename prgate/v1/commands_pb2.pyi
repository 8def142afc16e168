import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from prgate.v1 import pull_request_pb2 as _pull_request_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OpenPullRequest(_message.Message):
    __slots__ = ("repository", "title", "description", "author", "source_branch", "target_branch")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BRANCH_FIELD_NUMBER: _ClassVar[int]
    TARGET_BRANCH_FIELD_NUMBER: _ClassVar[int]
    repository: str
    title: str
    description: str
    author: str
    source_branch: str
    target_branch: str
    def __init__(self, repository: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., author: _Optional[str] = ..., source_branch: _Optional[str] = ..., target_branch: _Optional[str] = ...) -> None: ...

class ChangePullRequestTitle(_message.Message):
    __slots__ = ("pull_request_id", "title", "changed_by")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    title: str
    changed_by: str
    def __init__(self, pull_request_id: _Optional[str] = ..., title: _Optional[str] = ..., changed_by: _Optional[str] = ...) -> None: ...

class ApprovePullRequest(_message.Message):
    __slots__ = ("pull_request_id", "reviewer")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    reviewer: str
    def __init__(self, pull_request_id: _Optional[str] = ..., reviewer: _Optional[str] = ...) -> None: ...

class RecordCheckResult(_message.Message):
    __slots__ = ("pull_request_id", "check_name", "conclusion")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CHECK_NAME_FIELD_NUMBER: _ClassVar[int]
    CONCLUSION_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    check_name: str
    conclusion: _pull_request_pb2.CheckConclusion
    def __init__(self, pull_request_id: _Optional[str] = ..., check_name: _Optional[str] = ..., conclusion: _Optional[_Union[_pull_request_pb2.CheckConclusion, str]] = ...) -> None: ...

class MergePullRequest(_message.Message):
    __slots__ = ("pull_request_id", "merged_by_user", "commit_message_override")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_BY_USER_FIELD_NUMBER: _ClassVar[int]
    COMMIT_MESSAGE_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    merged_by_user: str
    commit_message_override: str
    def __init__(self, pull_request_id: _Optional[str] = ..., merged_by_user: _Optional[str] = ..., commit_message_override: _Optional[str] = ...) -> None: ...

class ClosePullRequest(_message.Message):
    __slots__ = ("pull_request_id", "actor")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    actor: str
    def __init__(self, pull_request_id: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class ReopenPullRequest(_message.Message):
    __slots__ = ("pull_request_id", "actor")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    actor: str
    def __init__(self, pull_request_id: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class RevertPullRequest(_message.Message):
    __slots__ = ("pull_request_id", "actor", "reason")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    actor: str
    reason: str
    def __init__(self, pull_request_id: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CommandEnvelope(_message.Message):
    __slots__ = ("command_id", "pull_request_id", "issued_at", "expected_version", "caller", "idempotency_key", "open_pull_request", "change_pull_request_title", "approve_pull_request", "record_check_result", "merge_pull_request", "close_pull_request", "reopen_pull_request", "revert_pull_request")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    OPEN_PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CHANGE_PULL_REQUEST_TITLE_FIELD_NUMBER: _ClassVar[int]
    APPROVE_PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    RECORD_CHECK_RESULT_FIELD_NUMBER: _ClassVar[int]
    MERGE_PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CLOSE_PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    REOPEN_PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    REVERT_PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    pull_request_id: str
    issued_at: _timestamp_pb2.Timestamp
    expected_version: int
    caller: str
    idempotency_key: str
    open_pull_request: OpenPullRequest
    change_pull_request_title: ChangePullRequestTitle
    approve_pull_request: ApprovePullRequest
    record_check_result: RecordCheckResult
    merge_pull_request: MergePullRequest
    close_pull_request: ClosePullRequest
    reopen_pull_request: ReopenPullRequest
    revert_pull_request: RevertPullRequest
    def __init__(self, command_id: _Optional[str] = ..., pull_request_id: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expected_version: _Optional[int] = ..., caller: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., open_pull_request: _Optional[_Union[OpenPullRequest, _Mapping]] = ..., change_pull_request_title: _Optional[_Union[ChangePullRequestTitle, _Mapping]] = ..., approve_pull_request: _Optional[_Union[ApprovePullRequest, _Mapping]] = ..., record_check_result: _Optional[_Union[RecordCheckResult, _Mapping]] = ..., merge_pull_request: _Optional[_Union[MergePullRequest, _Mapping]] = ..., close_pull_request: _Optional[_Union[ClosePullRequest, _Mapping]] = ..., reopen_pull_request: _Optional[_Union[ReopenPullRequest, _Mapping]] = ..., revert_pull_request: _Optional[_Union[RevertPullRequest, _Mapping]] = ...) -> None: ...
