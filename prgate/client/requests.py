"""Request messages of the gateway's RPCs, built from plain Python arguments.

Shared by the sync and the asyncio client. Every command call gets an idempotency key: the
caller's, or a fresh uuid4 per logical call, which the client then reuses for each of its own
retries of that call.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from google.protobuf.message import Message

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2, query_service_pb2

E = TypeVar("E")

Mode = Literal["accepted", "completed"]
Conclusion = Literal["success", "failure", "pending"]
Status = Literal["open", "merged", "closed", "reverted"]

MODES: dict[str, svc.ResponseMode] = {
    "accepted": svc.RESPONSE_MODE_ACCEPTED,
    "completed": svc.RESPONSE_MODE_COMPLETED,
}
CONCLUSIONS: dict[str, pull_request_pb2.CheckConclusion] = {
    "success": pull_request_pb2.CHECK_CONCLUSION_SUCCESS,
    "failure": pull_request_pb2.CHECK_CONCLUSION_FAILURE,
    "pending": pull_request_pb2.CHECK_CONCLUSION_PENDING,
}
TERMINAL = frozenset(
    {
        outcome_pb2.COMMAND_STATE_SUCCEEDED,
        outcome_pb2.COMMAND_STATE_REJECTED,
        outcome_pb2.COMMAND_STATE_FAILED,
    }
)
STATUSES: dict[str, pull_request_pb2.PullRequestStatus] = {
    "open": pull_request_pb2.PULL_REQUEST_STATUS_OPEN,
    "merged": pull_request_pb2.PULL_REQUEST_STATUS_MERGED,
    "closed": pull_request_pb2.PULL_REQUEST_STATUS_CLOSED,
    "reverted": pull_request_pb2.PULL_REQUEST_STATUS_REVERTED,
}


@dataclass(frozen=True)
class CommandCall:
    """One logical command call: the RPC's name, its request and the key of its retries."""

    rpc: str
    request: Message
    idempotency_key: str


def _lookup(table: Mapping[str, E], value: str, what: str) -> E:
    try:
        return table[value.lower()]
    except KeyError:
        raise ValueError(f"{what} must be one of {', '.join(table)}, not {value!r}") from None


def command_options(
    mode: Mode | None, idempotency_key: str | None, expected_version: int | None
) -> svc.CommandOptions:
    options = svc.CommandOptions(idempotency_key=idempotency_key or uuid.uuid4().hex)
    if mode is not None:
        options.response_mode = _lookup(MODES, mode, "mode")
    if expected_version is not None:
        options.expected_version = expected_version
    return options


def command(
    rpc: str,
    request_type: type[Message],
    body: Message,
    *,
    mode: Mode | None,
    idempotency_key: str | None,
    expected_version: int | None,
) -> CommandCall:
    options = command_options(mode, idempotency_key, expected_version)
    request = request_type()
    request.command.CopyFrom(body)  # type: ignore[attr-defined]
    request.options.CopyFrom(options)  # type: ignore[attr-defined]
    return CommandCall(rpc, request, options.idempotency_key)


def open_pull_request(
    repository: str,
    title: str,
    author: str,
    source_branch: str,
    target_branch: str,
    *,
    description: str = "",
) -> commands_pb2.OpenPullRequest:
    return commands_pb2.OpenPullRequest(
        repository=repository,
        title=title,
        author=author,
        source_branch=source_branch,
        target_branch=target_branch,
        description=description,
    )


def record_check(
    pull_request_id: str, check_name: str, conclusion: Conclusion | str
) -> commands_pb2.RecordCheckResult:
    return commands_pb2.RecordCheckResult(
        pull_request_id=pull_request_id,
        check_name=check_name,
        conclusion=_lookup(CONCLUSIONS, conclusion, "conclusion"),
    )


def list_request(
    repository: str, status: Status | str | None, page_size: int, page_token: str
) -> query_service_pb2.ListPullRequestsRequest:
    request = query_service_pb2.ListPullRequestsRequest(
        repository=repository, page_size=page_size, page_token=page_token
    )
    if status is not None:
        request.status = _lookup(STATUSES, status, "status")
    return request


# The RPC and request type of each command method: (rpc name, request class).
OPEN = ("OpenPullRequest", svc.OpenPullRequestRequest)
CHANGE_TITLE = ("ChangePullRequestTitle", svc.ChangePullRequestTitleRequest)
APPROVE = ("ApprovePullRequest", svc.ApprovePullRequestRequest)
RECORD_CHECK = ("RecordCheckResult", svc.RecordCheckResultRequest)
MERGE = ("MergePullRequest", svc.MergePullRequestRequest)
CLOSE = ("ClosePullRequest", svc.ClosePullRequestRequest)
REOPEN = ("ReopenPullRequest", svc.ReopenPullRequestRequest)
REVERT = ("RevertPullRequest", svc.RevertPullRequestRequest)
