import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from prgate.v1 import outcome_pb2 as _outcome_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PullRequestStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PULL_REQUEST_STATUS_UNSPECIFIED: _ClassVar[PullRequestStatus]
    PULL_REQUEST_STATUS_OPEN: _ClassVar[PullRequestStatus]
    PULL_REQUEST_STATUS_MERGED: _ClassVar[PullRequestStatus]
    PULL_REQUEST_STATUS_CLOSED: _ClassVar[PullRequestStatus]
    PULL_REQUEST_STATUS_REVERTED: _ClassVar[PullRequestStatus]

class CheckConclusion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHECK_CONCLUSION_UNSPECIFIED: _ClassVar[CheckConclusion]
    CHECK_CONCLUSION_SUCCESS: _ClassVar[CheckConclusion]
    CHECK_CONCLUSION_FAILURE: _ClassVar[CheckConclusion]
    CHECK_CONCLUSION_PENDING: _ClassVar[CheckConclusion]
PULL_REQUEST_STATUS_UNSPECIFIED: PullRequestStatus
PULL_REQUEST_STATUS_OPEN: PullRequestStatus
PULL_REQUEST_STATUS_MERGED: PullRequestStatus
PULL_REQUEST_STATUS_CLOSED: PullRequestStatus
PULL_REQUEST_STATUS_REVERTED: PullRequestStatus
CHECK_CONCLUSION_UNSPECIFIED: CheckConclusion
CHECK_CONCLUSION_SUCCESS: CheckConclusion
CHECK_CONCLUSION_FAILURE: CheckConclusion
CHECK_CONCLUSION_PENDING: CheckConclusion

class Review(_message.Message):
    __slots__ = ("reviewer", "approved_at")
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    APPROVED_AT_FIELD_NUMBER: _ClassVar[int]
    reviewer: str
    approved_at: _timestamp_pb2.Timestamp
    def __init__(self, reviewer: _Optional[str] = ..., approved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CheckResult(_message.Message):
    __slots__ = ("check_name", "conclusion", "recorded_at")
    CHECK_NAME_FIELD_NUMBER: _ClassVar[int]
    CONCLUSION_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    check_name: str
    conclusion: CheckConclusion
    recorded_at: _timestamp_pb2.Timestamp
    def __init__(self, check_name: _Optional[str] = ..., conclusion: _Optional[_Union[CheckConclusion, str]] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MergeInfo(_message.Message):
    __slots__ = ("merged_by_user", "commit_message", "merged_at")
    MERGED_BY_USER_FIELD_NUMBER: _ClassVar[int]
    COMMIT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MERGED_AT_FIELD_NUMBER: _ClassVar[int]
    merged_by_user: str
    commit_message: str
    merged_at: _timestamp_pb2.Timestamp
    def __init__(self, merged_by_user: _Optional[str] = ..., commit_message: _Optional[str] = ..., merged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RevertInfo(_message.Message):
    __slots__ = ("reverted_by", "reason", "reverted_at")
    REVERTED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REVERTED_AT_FIELD_NUMBER: _ClassVar[int]
    reverted_by: str
    reason: str
    reverted_at: _timestamp_pb2.Timestamp
    def __init__(self, reverted_by: _Optional[str] = ..., reason: _Optional[str] = ..., reverted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("pull_request_id", "repository", "title", "description", "author", "source_branch", "target_branch", "status", "reviews", "checks", "merge", "revert", "version", "created_at", "updated_at", "closed_at", "recent_commands")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BRANCH_FIELD_NUMBER: _ClassVar[int]
    TARGET_BRANCH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    REVERT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    RECENT_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    repository: str
    title: str
    description: str
    author: str
    source_branch: str
    target_branch: str
    status: PullRequestStatus
    reviews: _containers.RepeatedCompositeFieldContainer[Review]
    checks: _containers.RepeatedCompositeFieldContainer[CheckResult]
    merge: MergeInfo
    revert: RevertInfo
    version: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    closed_at: _timestamp_pb2.Timestamp
    recent_commands: _containers.RepeatedCompositeFieldContainer[_outcome_pb2.ProcessedCommand]
    def __init__(self, pull_request_id: _Optional[str] = ..., repository: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., author: _Optional[str] = ..., source_branch: _Optional[str] = ..., target_branch: _Optional[str] = ..., status: _Optional[_Union[PullRequestStatus, str]] = ..., reviews: _Optional[_Iterable[_Union[Review, _Mapping]]] = ..., checks: _Optional[_Iterable[_Union[CheckResult, _Mapping]]] = ..., merge: _Optional[_Union[MergeInfo, _Mapping]] = ..., revert: _Optional[_Union[RevertInfo, _Mapping]] = ..., version: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., closed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recent_commands: _Optional[_Iterable[_Union[_outcome_pb2.ProcessedCommand, _Mapping]]] = ...) -> None: ...
