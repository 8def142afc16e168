import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from prgate.v1 import pull_request_pb2 as _pull_request_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PullRequestOpened(_message.Message):
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

class PullRequestTitleChanged(_message.Message):
    __slots__ = ("old_title", "new_title", "changed_by")
    OLD_TITLE_FIELD_NUMBER: _ClassVar[int]
    NEW_TITLE_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    old_title: str
    new_title: str
    changed_by: str
    def __init__(self, old_title: _Optional[str] = ..., new_title: _Optional[str] = ..., changed_by: _Optional[str] = ...) -> None: ...

class PullRequestApproved(_message.Message):
    __slots__ = ("reviewer",)
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    reviewer: str
    def __init__(self, reviewer: _Optional[str] = ...) -> None: ...

class CheckResultRecorded(_message.Message):
    __slots__ = ("check_name", "conclusion")
    CHECK_NAME_FIELD_NUMBER: _ClassVar[int]
    CONCLUSION_FIELD_NUMBER: _ClassVar[int]
    check_name: str
    conclusion: _pull_request_pb2.CheckConclusion
    def __init__(self, check_name: _Optional[str] = ..., conclusion: _Optional[_Union[_pull_request_pb2.CheckConclusion, str]] = ...) -> None: ...

class PullRequestStatusChanged(_message.Message):
    __slots__ = ("from_status", "to_status", "actor")
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    from_status: _pull_request_pb2.PullRequestStatus
    to_status: _pull_request_pb2.PullRequestStatus
    actor: str
    def __init__(self, from_status: _Optional[_Union[_pull_request_pb2.PullRequestStatus, str]] = ..., to_status: _Optional[_Union[_pull_request_pb2.PullRequestStatus, str]] = ..., actor: _Optional[str] = ...) -> None: ...

class PullRequestMerged(_message.Message):
    __slots__ = ("merged_by_user", "commit_message")
    MERGED_BY_USER_FIELD_NUMBER: _ClassVar[int]
    COMMIT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    merged_by_user: str
    commit_message: str
    def __init__(self, merged_by_user: _Optional[str] = ..., commit_message: _Optional[str] = ...) -> None: ...

class PullRequestClosed(_message.Message):
    __slots__ = ("actor",)
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    actor: str
    def __init__(self, actor: _Optional[str] = ...) -> None: ...

class PullRequestReopened(_message.Message):
    __slots__ = ("actor",)
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    actor: str
    def __init__(self, actor: _Optional[str] = ...) -> None: ...

class PullRequestReverted(_message.Message):
    __slots__ = ("actor", "reason")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    actor: str
    reason: str
    def __init__(self, actor: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class EventEnvelope(_message.Message):
    __slots__ = ("event_id", "pull_request_id", "version", "command_id", "occurred_at", "pull_request_opened", "pull_request_title_changed", "pull_request_approved", "check_result_recorded", "pull_request_status_changed", "pull_request_merged", "pull_request_closed", "pull_request_reopened", "pull_request_reverted")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_OPENED_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_TITLE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_APPROVED_FIELD_NUMBER: _ClassVar[int]
    CHECK_RESULT_RECORDED_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_STATUS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_MERGED_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_CLOSED_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_REOPENED_FIELD_NUMBER: _ClassVar[int]
    PULL_REQUEST_REVERTED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    pull_request_id: str
    version: int
    command_id: str
    occurred_at: _timestamp_pb2.Timestamp
    pull_request_opened: PullRequestOpened
    pull_request_title_changed: PullRequestTitleChanged
    pull_request_approved: PullRequestApproved
    check_result_recorded: CheckResultRecorded
    pull_request_status_changed: PullRequestStatusChanged
    pull_request_merged: PullRequestMerged
    pull_request_closed: PullRequestClosed
    pull_request_reopened: PullRequestReopened
    pull_request_reverted: PullRequestReverted
    def __init__(self, event_id: _Optional[str] = ..., pull_request_id: _Optional[str] = ..., version: _Optional[int] = ..., command_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pull_request_opened: _Optional[_Union[PullRequestOpened, _Mapping]] = ..., pull_request_title_changed: _Optional[_Union[PullRequestTitleChanged, _Mapping]] = ..., pull_request_approved: _Optional[_Union[PullRequestApproved, _Mapping]] = ..., check_result_recorded: _Optional[_Union[CheckResultRecorded, _Mapping]] = ..., pull_request_status_changed: _Optional[_Union[PullRequestStatusChanged, _Mapping]] = ..., pull_request_merged: _Optional[_Union[PullRequestMerged, _Mapping]] = ..., pull_request_closed: _Optional[_Union[PullRequestClosed, _Mapping]] = ..., pull_request_reopened: _Optional[_Union[PullRequestReopened, _Mapping]] = ..., pull_request_reverted: _Optional[_Union[PullRequestReverted, _Mapping]] = ...) -> None: ...
