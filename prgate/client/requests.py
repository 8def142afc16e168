"""Request messages of the gateway's RPCs, built from plain Python arguments.

Shared by the sync and the asyncio client: each client method describes its call as a
:class:`Unary` or a :class:`Watch`, which either client then makes with its own I/O.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

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
class Unary:
    """One logical unary call, as both clients make it.

    ``rpc`` is the method's name in its service; ``unpack`` turns the response into what the
    client method returns; ``timeout`` is seconds per attempt (None: the client's
    ``timeout``); ``idempotency_key`` is the key every retry of a command resends ("" for a
    query).
    """

    rpc: str
    request: Message
    unpack: Callable[[Any], Any]
    timeout: float | None = None
    idempotency_key: str = ""


@dataclass(frozen=True)
class Watch:
    """One logical server-streaming call, reopened after UNAVAILABLE.

    ``fresh`` says whether an item is new and remembers it (so one Watch serves one call);
    only fresh items are passed on, so a reopened stream never repeats one. ``timeout`` is
    seconds for the whole watch, reopenings included (None: no limit). With ``rewatch`` the
    stream is also reopened after DEADLINE_EXCEEDED while that time is left: the gateway
    bounds each watch itself.
    """

    rpc: str
    request: Message
    fresh: Callable[[Any], bool]
    unpack: Callable[[Any], Any]
    timeout: float | None = None
    rewatch: bool = False


def lookup(table: Mapping[str, E], value: str, what: str) -> E:
    """``table[value]`` for a case-insensitive name; ValueError names the allowed ones."""
    try:
        return table[value.lower()]
    except KeyError:
        raise ValueError(f"{what} must be one of {', '.join(table)}, not {value!r}") from None


def command(body: Message, options: svc.CommandOptions, timeout: float | None) -> Unary:
    """The call of the command RPC that carries ``body`` (one of the commands_pb2 messages)."""
    rpc, request_type = COMMAND_RPCS[type(body)]
    request = request_type()
    request.command.CopyFrom(body)  # type: ignore[attr-defined]
    request.options.CopyFrom(options)  # type: ignore[attr-defined]
    return Unary(rpc, request, RECEIPT, timeout, options.idempotency_key)


def record_check(
    pull_request_id: str, check_name: str, conclusion: Conclusion | str
) -> commands_pb2.RecordCheckResult:
    return commands_pb2.RecordCheckResult(
        pull_request_id=pull_request_id,
        check_name=check_name,
        conclusion=lookup(CONCLUSIONS, conclusion, "conclusion"),
    )


def list_request(
    repository: str, status: Status | str | None, page_size: int, page_token: str
) -> query_service_pb2.ListPullRequestsRequest:
    request = query_service_pb2.ListPullRequestsRequest(
        repository=repository, page_size=page_size, page_token=page_token
    )
    if status is not None:
        request.status = lookup(STATUSES, status, "status")
    return request


# What the client returns of a response: the receipt of a command, the snapshot of a query.
RECEIPT = operator.attrgetter("receipt")
PULL_REQUEST = operator.attrgetter("pull_request")

# The RPC and request type of each command, by the type of its body.
COMMAND_RPCS: dict[type[Message], tuple[str, type[Message]]] = {
    commands_pb2.OpenPullRequest: ("OpenPullRequest", svc.OpenPullRequestRequest),
    commands_pb2.ChangePullRequestTitle: (
        "ChangePullRequestTitle",
        svc.ChangePullRequestTitleRequest,
    ),
    commands_pb2.ApprovePullRequest: ("ApprovePullRequest", svc.ApprovePullRequestRequest),
    commands_pb2.RecordCheckResult: ("RecordCheckResult", svc.RecordCheckResultRequest),
    commands_pb2.MergePullRequest: ("MergePullRequest", svc.MergePullRequestRequest),
    commands_pb2.ClosePullRequest: ("ClosePullRequest", svc.ClosePullRequestRequest),
    commands_pb2.ReopenPullRequest: ("ReopenPullRequest", svc.ReopenPullRequestRequest),
    commands_pb2.RevertPullRequest: ("RevertPullRequest", svc.RevertPullRequestRequest),
}
