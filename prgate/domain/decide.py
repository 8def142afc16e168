"""decide(): a command and the current state in, events or a rejection out. Pure.

The order of the checks is part of the contract (docs/domain-api.md): field rules, then
NOT_FOUND, then ``expected_version``, then the state rules. A pull request "exists" when a state
with ``version > 0`` is given; a state of version 0 (for example one that only holds
``recent_commands``) counts as absent.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf import timestamp_pb2

from prgate.v1 import commands_pb2, events_pb2, pull_request_pb2

from . import reasons, rules
from .commands import OPEN, pull_request_id_of
from .fields import validate_fields
from .limits import bounded_violations
from .outcome import (
    Accepted,
    Decision,
    Rejected,
    failed_precondition,
    invalid_argument,
    not_found,
    version_conflict,
)
from .policy import DEFAULT_POLICY, Policy

# Namespace of the event ids: uuid5(EVENT_ID_NAMESPACE, f"{command_id}:{version}"). Fixed
# forever, so that a retried transaction writes the same event ids (uuid5 of the DNS namespace
# and "prgate.v1.EventEnvelope").
EVENT_ID_NAMESPACE = uuid.UUID("ba4186dc-62de-5a3c-b93c-a3366a6b13da")

MAX_VERSION = 2**63 - 1  # int64
# The most events one command emits (merge, close, reopen, revert: two).
MAX_EVENTS_PER_COMMAND = 2

# EventEnvelope oneof field for each payload type.
_EVENT_FIELD: dict[str, str] = {
    field.message_type.full_name: field.name
    for field in events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["event"].fields
    if field.message_type is not None
}


def event_id(command_id: str, version: int) -> str:
    """The deterministic id of the event at ``version`` caused by ``command_id``."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{command_id}:{version}"))


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of ``moment`` (a naive datetime is taken as UTC)."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def exists(state: pull_request_pb2.PullRequest | None) -> bool:
    """Whether ``state`` is a pull request that has been opened."""
    return state is not None and state.version > 0


def _state_rules(
    state: pull_request_pb2.PullRequest | None,
    pull_request_id: str,
    command: commands_pb2.CommandEnvelope,
    policy: Policy,
) -> rules.RuleOutcome:
    which = command.WhichOneof("command")
    if which == OPEN:
        return rules.open_pull_request(state, pull_request_id, command.open_pull_request)
    assert state is not None  # decide() answered NOT_FOUND already
    if which == "change_pull_request_title":
        return rules.change_title(state, command.change_pull_request_title)
    if which == "approve_pull_request":
        return rules.approve(state, command.approve_pull_request, policy)
    if which == "record_check_result":
        return rules.record_check(state, command.record_check_result, policy)
    if which == "merge_pull_request":
        return rules.merge(state, command.merge_pull_request, policy)
    if which == "close_pull_request":
        return rules.close(state, command.close_pull_request)
    if which == "reopen_pull_request":
        return rules.reopen(state, command.reopen_pull_request)
    if which == "revert_pull_request":
        return rules.revert(state, command.revert_pull_request)
    raise AssertionError(f"no rule for command {which!r}")  # validate_fields rejects these


def _envelope(
    payload: rules.EventPayload,
    pull_request_id: str,
    command_id: str,
    version: int,
    occurred_at: timestamp_pb2.Timestamp,
) -> events_pb2.EventEnvelope:
    envelope = events_pb2.EventEnvelope(
        event_id=event_id(command_id, version),
        pull_request_id=pull_request_id,
        version=version,
        command_id=command_id,
        occurred_at=occurred_at,
    )
    getattr(envelope, _EVENT_FIELD[payload.DESCRIPTOR.full_name]).CopyFrom(payload)
    return envelope


def decide(
    state: pull_request_pb2.PullRequest | None,
    command: commands_pb2.CommandEnvelope,
    *,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> Decision:
    """Decide what ``command`` does to ``state`` (None: no such pull request yet) at ``now``.

    Returns :class:`Accepted` with the events (versions ``state.version + 1`` onwards, possibly
    none) or :class:`Rejected` with violations of one kind, at most
    :data:`~prgate.domain.limits.MAX_REJECTION_BYTES` of them. Never mutates its inputs and
    never raises for any command.
    """
    field_violations = validate_fields(command, policy)
    if field_violations:
        return Rejected(bounded_violations(field_violations))
    pull_request_id = pull_request_id_of(command)
    is_open = command.WhichOneof("command") == OPEN
    if is_open and not pull_request_id:
        return Rejected(
            (
                invalid_argument(
                    reasons.PULL_REQUEST_ID_REQUIRED,
                    "pull_request_id",
                    "the gateway must assign the new pull request's id before deciding",
                ),
            )
        )
    current = state if exists(state) else None
    if current is None and not is_open:
        return Rejected(
            (
                not_found(
                    reasons.PULL_REQUEST_NOT_FOUND,
                    pull_request_id,
                    f"pull request {pull_request_id} does not exist",
                ),
            )
        )
    version = current.version if current is not None else 0
    if command.HasField("expected_version") and command.expected_version != version:
        return Rejected(
            (
                version_conflict(
                    reasons.VERSION_CONFLICT,
                    pull_request_id,
                    f"expected version {command.expected_version}, "
                    f"pull request {pull_request_id} is at version {version}",
                ),
            )
        )
    if version > MAX_VERSION - MAX_EVENTS_PER_COMMAND:
        return Rejected(
            (
                failed_precondition(
                    reasons.VERSION_LIMIT_REACHED,
                    pull_request_id,
                    f"pull request {pull_request_id} cannot take any more events",
                ),
            )
        )
    outcome = _state_rules(current, pull_request_id, command, policy)
    if isinstance(outcome, Rejected):
        return Rejected(bounded_violations(outcome.violations))
    occurred_at = timestamp(now)
    return Accepted(
        tuple(
            _envelope(payload, pull_request_id, command.command_id, version + offset, occurred_at)
            for offset, payload in enumerate(outcome, start=1)
        )
    )
