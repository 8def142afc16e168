"""apply(): decide plus idempotency, the remembered command and the CommandResult. Pure."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime

import pytest

from prgate.domain import (
    Accepted,
    DecideFailed,
    Outcome,
    Policy,
    apply,
    decide,
    fingerprint,
    fold,
)
from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2
from tests.unit.domain.domain_builders import (
    NOW,
    PR,
    approve_cmd,
    merge_cmd,
    open_cmd,
    title_cmd,
)

SUCCEEDED = outcome_pb2.COMMAND_STATE_SUCCEEDED
REJECTED = outcome_pb2.COMMAND_STATE_REJECTED
LATER = datetime(2030, 1, 1, tzinfo=UTC)
# The module (the package's ``apply`` is the function).
apply_module = importlib.import_module("prgate.domain.apply")


def applied_state(*commands: commands_pb2.CommandEnvelope) -> pull_request_pb2.PullRequest:
    state: pull_request_pb2.PullRequest | None = None
    for command in commands:
        state = apply(state, command, now=NOW).state
    assert state is not None
    return state


def test_an_accepted_command_gives_its_events_the_folded_state_and_a_succeeded_result() -> None:
    command = open_cmd(command_id="c-open")
    applied = apply(None, command, now=NOW, completed_at=LATER)
    decision = decide(None, command, now=NOW)
    assert isinstance(decision, Accepted)
    assert applied.outcome is Outcome.SUCCEEDED
    assert applied.events == decision.events
    assert applied.state is not None
    expected = fold(decision.events)
    assert expected is not None
    (remembered,) = applied.state.recent_commands
    del applied.state.recent_commands[:]
    assert applied.state == expected
    assert remembered == outcome_pb2.ProcessedCommand(
        command_id="c-open",
        state=SUCCEEDED,
        version=1,
        first_version=0,
        fingerprint=fingerprint(command),
    )
    result = applied.result
    assert (result.command_id, result.pull_request_id, result.command_type) == (
        "c-open",
        PR,
        "OpenPullRequest",
    )
    assert result.state == SUCCEEDED and result.version == 1 and not result.duplicate
    assert list(result.events) == list(decision.events)
    assert result.completed_at.ToDatetime(tzinfo=UTC) == LATER


def test_completed_at_defaults_to_now() -> None:
    applied = apply(None, open_cmd(), now=NOW)
    assert applied.result.completed_at.ToDatetime(tzinfo=UTC) == NOW


def test_a_rejection_is_remembered_without_a_new_version_or_events() -> None:
    state = applied_state(open_cmd())
    command = approve_cmd("alice", command_id="c-self")  # the author approving
    applied = apply(state, command, now=NOW)
    assert applied.outcome is Outcome.REJECTED and applied.events == ()
    assert [v.reason for v in applied.result.violations] == ["SELF_APPROVAL"]
    assert applied.result.state == REJECTED and applied.result.version == 1
    assert applied.state is not None and applied.state.version == 1
    remembered = applied.state.recent_commands[-1]
    assert (remembered.command_id, remembered.state, remembered.version) == ("c-self", REJECTED, 1)
    assert [v.reason for v in remembered.violations] == ["SELF_APPROVAL"]


def test_a_no_op_is_remembered_at_the_same_version() -> None:
    state = applied_state(open_cmd(title="Same"))
    applied = apply(state, title_cmd("Same", command_id="c-same"), now=NOW)
    assert applied.outcome is Outcome.SUCCEEDED and applied.events == ()
    assert applied.result.version == 1
    assert applied.state is not None and applied.state.version == 1
    assert applied.state.recent_commands[-1].command_id == "c-same"


def test_a_command_on_a_missing_pull_request_writes_nothing() -> None:
    applied = apply(None, approve_cmd("bob", pr="nope"), now=NOW)
    assert applied.outcome is Outcome.REJECTED
    assert applied.state is None and applied.events == ()
    assert applied.result.state == REJECTED and applied.result.version == 0


def test_a_redelivered_command_gets_its_original_answer_flagged_duplicate() -> None:
    approve = approve_cmd("bob", command_id="c-2")
    state = applied_state(open_cmd(), approve)
    again = apply(state, approve, now=NOW, completed_at=LATER)
    assert again.outcome is Outcome.DUPLICATE
    assert again.events == () and again.state is None
    result = again.result
    assert result.duplicate and result.state == SUCCEEDED and result.version == 2
    assert not result.events
    assert result.command_type == "ApprovePullRequest"


def test_a_redelivered_rejection_repeats_its_violations() -> None:
    self_approval = approve_cmd("alice", command_id="c-self")
    state = applied_state(open_cmd(), self_approval)
    again = apply(state, self_approval, now=NOW)
    assert again.outcome is Outcome.DUPLICATE and again.result.duplicate
    assert again.result.state == REJECTED
    assert [v.reason for v in again.result.violations] == ["SELF_APPROVAL"]


def test_a_reused_command_id_with_another_command_is_rejected_and_changes_nothing() -> None:
    state = applied_state(open_cmd(), approve_cmd("bob", command_id="c-2"))
    before = pull_request_pb2.PullRequest()
    before.CopyFrom(state)
    other = merge_cmd(command_id="c-2")
    applied = apply(state, other, now=NOW)
    assert applied.outcome is Outcome.REJECTED
    assert applied.events == () and applied.state is None
    assert state == before
    result = applied.result
    assert result.state == REJECTED and not result.duplicate and result.version == 2
    (violation,) = result.violations
    assert violation.kind == outcome_pb2.VIOLATION_KIND_ALREADY_EXISTS
    assert (violation.reason, violation.subject) == ("IDEMPOTENCY_KEY_REUSED", "c-2")
    assert result.command_type == "MergePullRequest"


def test_a_record_without_a_fingerprint_counts_as_the_same_command() -> None:
    """Records written before fingerprints existed: a redelivery, not a reuse."""
    state = applied_state(open_cmd(), approve_cmd("bob", command_id="c-2"))
    state.recent_commands[-1].ClearField("fingerprint")
    applied = apply(state, merge_cmd(command_id="c-2"), now=NOW)
    assert applied.outcome is Outcome.DUPLICATE and applied.result.duplicate


def test_the_policy_bounds_the_remembered_commands() -> None:
    policy = Policy(recent_commands_kept=2)
    state = None
    for command in (open_cmd(), title_cmd("a"), title_cmd("b"), title_cmd("c")):
        state = apply(state, command, now=NOW, policy=policy).state
    assert state is not None and len(state.recent_commands) == 2


def test_the_arguments_are_not_modified() -> None:
    state = applied_state(open_cmd())
    command = approve_cmd("bob")
    state_before, command_before = state.SerializeToString(), command.SerializeToString()
    apply(state, command, now=NOW)
    assert state.SerializeToString() == state_before
    assert command.SerializeToString() == command_before


def test_decide_raising_is_reported_as_decide_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("oops")

    monkeypatch.setattr(apply_module, "decide", broken)
    with pytest.raises(DecideFailed, match="decide failed: KeyError: 'oops'") as raised:
        apply(None, open_cmd(), now=NOW)
    assert isinstance(raised.value.__cause__, KeyError)
