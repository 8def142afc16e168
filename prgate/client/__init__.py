"""Python client of the prgate gateway: :class:`Client` (blocking) and :class:`AsyncClient`.

    from prgate.client import Client, FailedPrecondition

    with Client("127.0.0.1:50051") as client:
        opened = client.open_pull_request("acme/w", "Add a widget", "ada", "feature/w", "main")
        pr_id = opened.pull_request_id
        client.approve(pr_id, "bob")
        client.record_check(pr_id, "ci", "success")
        merge = client.merge(pr_id, "bob")              # ACCEPTED by default
        done = client.wait_command(merge.command_id)    # SUCCEEDED, or raises
        assert client.get(pr_id).status == PullRequestStatus.PULL_REQUEST_STATUS_MERGED

Each command call carries an idempotency key (yours or a fresh uuid4), reused when the client
retries after UNAVAILABLE, so a retry never applies a command twice. The keywords of every
command (``mode``, ``idempotency_key``, ``expected_version``, ``timeout``) can also come as one
:class:`CallOptions` (``options=``). Errors are :class:`PrgateError` subclasses with the
decoded ``google.rpc`` details.

Read-your-writes across gateways: the client's :class:`Session` (``client.session``) keeps the
consistency token of every answer and sends it with the next call about the same pull
request, so a pull request opened through one gateway is found by the next call on any other.
"""

from prgate.client.aio import AsyncClient
from prgate.client.connection import DEFAULT_TARGET, Connection, tls_credentials
from prgate.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    PreconditionViolation,
    PrgateError,
    Rejected,
    Resource,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    error_from_result,
    error_from_rpc,
)
from prgate.client.options import CallKeywords, CallOptions
from prgate.client.requests import Conclusion, Mode, Status
from prgate.client.retry import NO_RETRY, RetryEvent, RetryPolicy
from prgate.client.session import Session
from prgate.client.sync import Client
from prgate.v1.command_service_pb2 import CommandReceipt
from prgate.v1.outcome_pb2 import CommandState
from prgate.v1.pull_request_pb2 import PullRequest, PullRequestStatus

__all__ = [
    "DEFAULT_TARGET",
    "NO_RETRY",
    "Aborted",
    "AlreadyExists",
    "AsyncClient",
    "CallKeywords",
    "CallOptions",
    "Cancelled",
    "Client",
    "CommandReceipt",
    "CommandState",
    "Conclusion",
    "Connection",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "Mode",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "PreconditionViolation",
    "PrgateError",
    "PullRequest",
    "PullRequestStatus",
    "Rejected",
    "Resource",
    "ResourceExhausted",
    "RetryEvent",
    "RetryPolicy",
    "Session",
    "Status",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_from_result",
    "error_from_rpc",
    "tls_credentials",
]
