"""Builders shared by the domain tests: commands, a few states, and a tiny in-memory applier."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from google.protobuf.message import Message

from prgate.domain import DEFAULT_POLICY, Accepted, Policy, Rejected, decide, evolve
from prgate.v1 import commands_pb2, events_pb2, pull_request_pb2

NOW = datetime(2024, 5, 1, 12, 30, 15, 250_000, tzinfo=UTC)
PR = "pr-1"
AUTHOR = "alice"

OPEN = pull_request_pb2.PULL_REQUEST_STATUS_OPEN
MERGED = pull_request_pb2.PULL_REQUEST_STATUS_MERGED
CLOSED = pull_request_pb2.PULL_REQUEST_STATUS_CLOSED
REVERTED = pull_request_pb2.PULL_REQUEST_STATUS_REVERTED
SUCCESS = pull_request_pb2.CHECK_CONCLUSION_SUCCESS
FAILURE = pull_request_pb2.CHECK_CONCLUSION_FAILURE
PENDING = pull_request_pb2.CHECK_CONCLUSION_PENDING

_ids = itertools.count(1)


def envelope(
    field: str,
    command: Message,
    *,
    command_id: str | None = None,
    pull_request_id: str = "",
    expected_version: int | None = None,
) -> commands_pb2.CommandEnvelope:
    """A CommandEnvelope carrying ``command`` in oneof field ``field``."""
    env = commands_pb2.CommandEnvelope(
        command_id=command_id if command_id is not None else f"cmd-{next(_ids)}",
        pull_request_id=pull_request_id,
    )
    if expected_version is not None:
        env.expected_version = expected_version
    getattr(env, field).CopyFrom(command)
    return env


def open_cmd(
    pr: str = PR,
    expected_version: int | None = None,
    command_id: str | None = None,
    **fields: str,
):
    values = {
        "repository": "octo/widgets",
        "title": "Add the frobnicator",
        "description": "It frobs.\nAnd nicates.",
        "author": AUTHOR,
        "source_branch": "feature/frob",
        "target_branch": "main",
    }
    values.update(fields)
    return envelope(
        "open_pull_request",
        commands_pb2.OpenPullRequest(**values),
        pull_request_id=pr,
        expected_version=expected_version,
        command_id=command_id,
    )


def title_cmd(title: str, changed_by: str = AUTHOR, pr: str = PR, **kw):
    cmd = commands_pb2.ChangePullRequestTitle(
        pull_request_id=pr, title=title, changed_by=changed_by
    )
    return envelope("change_pull_request_title", cmd, **kw)


def approve_cmd(reviewer: str, pr: str = PR, **kw):
    cmd = commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer=reviewer)
    return envelope("approve_pull_request", cmd, **kw)


def check_cmd(name: str, conclusion: int, pr: str = PR, **kw):
    cmd = commands_pb2.RecordCheckResult(pull_request_id=pr, check_name=name)
    cmd.conclusion = conclusion  # type: ignore[assignment]
    return envelope("record_check_result", cmd, **kw)


def merge_cmd(user: str = "bob", override: str = "", pr: str = PR, **kw):
    cmd = commands_pb2.MergePullRequest(
        pull_request_id=pr, merged_by_user=user, commit_message_override=override
    )
    return envelope("merge_pull_request", cmd, **kw)


def close_cmd(actor: str = AUTHOR, pr: str = PR, **kw):
    cmd = commands_pb2.ClosePullRequest(pull_request_id=pr, actor=actor)
    return envelope("close_pull_request", cmd, **kw)


def reopen_cmd(actor: str = AUTHOR, pr: str = PR, **kw):
    cmd = commands_pb2.ReopenPullRequest(pull_request_id=pr, actor=actor)
    return envelope("reopen_pull_request", cmd, **kw)


def revert_cmd(actor: str = "bob", reason: str = "broke main", pr: str = PR, **kw):
    cmd = commands_pb2.RevertPullRequest(pull_request_id=pr, actor=actor, reason=reason)
    return envelope("revert_pull_request", cmd, **kw)


def accept(
    state: pull_request_pb2.PullRequest | None,
    command: commands_pb2.CommandEnvelope,
    policy: Policy = DEFAULT_POLICY,
) -> tuple[pull_request_pb2.PullRequest | None, tuple[events_pb2.EventEnvelope, ...]]:
    """Decide, insist on Accepted, and return the new state with the events."""
    decision = decide(state, command, now=NOW, policy=policy)
    assert isinstance(decision, Accepted), decision
    for event in decision.events:
        state = evolve(state, event)
    return state, decision.events


def reject(
    state: pull_request_pb2.PullRequest | None,
    command: commands_pb2.CommandEnvelope,
    policy: Policy = DEFAULT_POLICY,
) -> Rejected:
    decision = decide(state, command, now=NOW, policy=policy)
    assert isinstance(decision, Rejected), decision
    return decision


def run(*commands: commands_pb2.CommandEnvelope) -> pull_request_pb2.PullRequest:
    """The state after accepting every command in order, starting from nothing."""
    state: pull_request_pb2.PullRequest | None = None
    for command in commands:
        state, _ = accept(state, command)
    assert state is not None
    return state


def opened() -> pull_request_pb2.PullRequest:
    return run(open_cmd())


def mergeable() -> pull_request_pb2.PullRequest:
    return run(open_cmd(), approve_cmd("bob"), check_cmd("ci", SUCCESS))


def merged() -> pull_request_pb2.PullRequest:
    return run(open_cmd(), approve_cmd("bob"), merge_cmd())


def closed() -> pull_request_pb2.PullRequest:
    return run(open_cmd(), close_cmd())


def reverted() -> pull_request_pb2.PullRequest:
    return run(open_cmd(), approve_cmd("bob"), merge_cmd(), revert_cmd())


def payloads(events: tuple[events_pb2.EventEnvelope, ...]) -> list[Message]:
    """The payload of every event, in order."""
    out: list[Message] = []
    for event in events:
        which = event.WhichOneof("event")
        assert which is not None
        out.append(getattr(event, which))
    return out


def reasons_of(rejected: Rejected) -> list[tuple[int, str, str, str]]:
    """(kind, reason, field, subject) of every violation."""
    return [(v.kind, v.reason, v.field, v.subject) for v in rejected.violations]
