"""The eight command RPCs as data: envelope field and default response mode."""

from __future__ import annotations

from dataclasses import dataclass

from prgate.v1 import command_service_pb2 as svc

ACCEPTED = svc.RESPONSE_MODE_ACCEPTED
COMPLETED = svc.RESPONSE_MODE_COMPLETED


@dataclass(frozen=True)
class CommandSpec:
    """How one command RPC maps onto a CommandEnvelope."""

    rpc: str
    # Name of the CommandEnvelope oneof field that carries this command.
    envelope_field: str
    # Mode used when the request says RESPONSE_MODE_UNSPECIFIED.
    default_mode: int
    # OpenPullRequest has no pull_request_id: the gateway assigns it.
    creates: bool = False


SPECS: dict[str, CommandSpec] = {
    spec.rpc: spec
    for spec in (
        CommandSpec("OpenPullRequest", "open_pull_request", COMPLETED, creates=True),
        CommandSpec("ChangePullRequestTitle", "change_pull_request_title", COMPLETED),
        CommandSpec("ApprovePullRequest", "approve_pull_request", COMPLETED),
        CommandSpec("RecordCheckResult", "record_check_result", COMPLETED),
        # Merge and revert are the long-running commands: by default the caller gets the
        # receipt once the command is durable and follows it with WatchCommand.
        CommandSpec("MergePullRequest", "merge_pull_request", ACCEPTED),
        CommandSpec("ClosePullRequest", "close_pull_request", COMPLETED),
        CommandSpec("ReopenPullRequest", "reopen_pull_request", COMPLETED),
        CommandSpec("RevertPullRequest", "revert_pull_request", ACCEPTED),
    )
}
