from prgate.v1 import pull_request_pb2 as _pull_request_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetPullRequestRequest(_message.Message):
    __slots__ = ("pull_request_id", "consistency_token")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    consistency_token: str
    def __init__(self, pull_request_id: _Optional[str] = ..., consistency_token: _Optional[str] = ...) -> None: ...

class GetPullRequestResponse(_message.Message):
    __slots__ = ("pull_request", "consistency_token")
    PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pull_request: _pull_request_pb2.PullRequest
    consistency_token: str
    def __init__(self, pull_request: _Optional[_Union[_pull_request_pb2.PullRequest, _Mapping]] = ..., consistency_token: _Optional[str] = ...) -> None: ...

class ListPullRequestsRequest(_message.Message):
    __slots__ = ("repository", "status", "page_size", "page_token", "consistency_token")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    repository: str
    status: _pull_request_pb2.PullRequestStatus
    page_size: int
    page_token: str
    consistency_token: str
    def __init__(self, repository: _Optional[str] = ..., status: _Optional[_Union[_pull_request_pb2.PullRequestStatus, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., consistency_token: _Optional[str] = ...) -> None: ...

class ListPullRequestsResponse(_message.Message):
    __slots__ = ("pull_requests", "next_page_token")
    PULL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pull_requests: _containers.RepeatedCompositeFieldContainer[_pull_request_pb2.PullRequest]
    next_page_token: str
    def __init__(self, pull_requests: _Optional[_Iterable[_Union[_pull_request_pb2.PullRequest, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchPullRequestRequest(_message.Message):
    __slots__ = ("pull_request_id", "consistency_token")
    PULL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pull_request_id: str
    consistency_token: str
    def __init__(self, pull_request_id: _Optional[str] = ..., consistency_token: _Optional[str] = ...) -> None: ...

class WatchPullRequestResponse(_message.Message):
    __slots__ = ("pull_request", "consistency_token")
    PULL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    pull_request: _pull_request_pb2.PullRequest
    consistency_token: str
    def __init__(self, pull_request: _Optional[_Union[_pull_request_pb2.PullRequest, _Mapping]] = ..., consistency_token: _Optional[str] = ...) -> None: ...
