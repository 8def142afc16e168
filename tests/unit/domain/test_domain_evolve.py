"""evolve/fold, the recent-command record and the policy."""

from __future__ import annotations

import pytest

from prgate.domain import Accepted, Policy, decide, evolve, find_processed, fold, remember
from prgate.v1 import events_pb2, outcome_pb2, pull_request_pb2
from tests.unit.domain.domain_builders import (
    NOW,
    PR,
    approve_cmd,
    check_cmd,
    close_cmd,
    merge_cmd,
    open_cmd,
    opened,
    reopen_cmd,
    revert_cmd,
    title_cmd,
)

SUCCEEDED = outcome_pb2.COMMAND_STATE_SUCCEEDED


def history() -> list[events_pb2.EventEnvelope]:
    commands = [
        open_cmd(),
        title_cmd("T2"),
        check_cmd("ci", 3),
        approve_cmd("bob"),
        check_cmd("ci", 1),
        close_cmd(),
        reopen_cmd(),
        merge_cmd(),
        revert_cmd(),
    ]
    events: list[events_pb2.EventEnvelope] = []
    state = None
    for command in commands:
        decision = decide(state, command, now=NOW)
        assert isinstance(decision, Accepted), decision
        events.extend(decision.events)
        state = fold(decision.events, state)
    return events


def test_fold_of_the_whole_history_equals_step_by_step():
    events = history()
    assert [e.version for e in events] == list(range(1, 14))
    step = None
    for event in events:
        step = evolve(step, event)
    assert fold(events) == step
    assert fold(events[5:], fold(events[:5])) == step


def test_fold_of_nothing_is_the_state_given():
    assert fold([]) is None
    state = opened()
    assert fold([], state) is state


def test_evolve_never_mutates_its_input():
    events = history()
    state = fold(events[:4])
    assert state is not None
    before = state.SerializeToString(deterministic=True)
    after = evolve(state, events[4])
    assert state.SerializeToString(deterministic=True) == before
    assert after.version == 5


def test_evolve_sets_version_and_updated_at_from_the_event():
    event = events_pb2.EventEnvelope(
        pull_request_id=PR, version=2, pull_request_approved=events_pb2.PullRequestApproved()
    )
    event.occurred_at.FromSeconds(42)
    event.pull_request_approved.reviewer = "bob"
    state = evolve(opened(), event)
    assert state.version == 2
    assert state.updated_at.seconds == 42


def test_an_event_of_unknown_type_only_moves_the_version():
    state = opened()
    moved = evolve(state, events_pb2.EventEnvelope(pull_request_id=PR, version=2))
    expected = pull_request_pb2.PullRequest()
    expected.CopyFrom(state)
    expected.version = 2
    expected.ClearField("updated_at")
    assert moved == expected


def test_opened_keeps_the_recent_command_record():
    placeholder = remember(None, outcome_pb2.ProcessedCommand(command_id="c-0"))
    decision = decide(placeholder, open_cmd(), now=NOW)
    assert isinstance(decision, Accepted)
    state = fold(decision.events, placeholder)
    assert state is not None
    assert [p.command_id for p in state.recent_commands] == ["c-0"]
    assert state.version == 1


def processed(command_id: str, version: int = 1) -> outcome_pb2.ProcessedCommand:
    return outcome_pb2.ProcessedCommand(
        command_id=command_id, state=SUCCEEDED, version=version, first_version=version - 1
    )


def test_find_processed():
    state = remember(opened(), processed("c-1"))
    assert find_processed(state, "c-1") == processed("c-1")
    assert find_processed(state, "c-2") is None
    assert find_processed(state, "") is None
    assert find_processed(None, "c-1") is None


def test_find_processed_returns_a_copy():
    state = remember(opened(), processed("c-1"))
    found = find_processed(state, "c-1")
    assert found is not None
    found.version = 99
    assert state.recent_commands[0].version == 1


def test_remember_keeps_the_newest_entries_newest_last():
    state = opened()
    policy = Policy(recent_commands_kept=3)
    for n in range(5):
        state = remember(state, processed(f"c-{n}"), policy)
    assert [p.command_id for p in state.recent_commands] == ["c-2", "c-3", "c-4"]
    assert find_processed(state, "c-1") is None


def test_remember_keeps_one_entry_per_command_id():
    state = remember(remember(opened(), processed("c-1", 1)), processed("c-2", 2))
    state = remember(state, processed("c-1", 3))
    assert [(p.command_id, p.version) for p in state.recent_commands] == [("c-2", 2), ("c-1", 3)]


def test_remember_never_mutates_its_inputs():
    state = opened()
    entry = processed("c-1")
    new = remember(state, entry)
    assert len(state.recent_commands) == 0
    new.recent_commands[0].version = 50
    assert entry.version == 1
    assert new.version == state.version


def test_remember_with_nothing_kept_and_without_state():
    assert (
        len(remember(opened(), processed("c-1"), Policy(recent_commands_kept=0)).recent_commands)
        == 0
    )
    placeholder = remember(None, processed("c-1"))
    assert placeholder.version == 0
    assert find_processed(placeholder, "c-1") is not None


def test_the_default_policy():
    assert Policy() == Policy(required_approvals=1, max_title_length=256, recent_commands_kept=64)


@pytest.mark.parametrize(
    "kwargs",
    [{"required_approvals": -1}, {"max_title_length": 0}, {"recent_commands_kept": -1}],
)
def test_a_nonsensical_policy_is_refused(kwargs):
    with pytest.raises(ValueError):
        Policy(**kwargs)
