"""State rules of every command, the accepted and the rejected side, with the exact events."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from prgate.domain import Accepted, Policy, decide, event_id
from prgate.v1 import events_pb2, outcome_pb2, pull_request_pb2
from tests.unit.domain.domain_builders import (
    AUTHOR,
    CLOSED,
    FAILURE,
    MERGED,
    NOW,
    OPEN,
    PENDING,
    PR,
    REVERTED,
    SUCCESS,
    accept,
    approve_cmd,
    check_cmd,
    close_cmd,
    closed,
    merge_cmd,
    mergeable,
    merged,
    open_cmd,
    opened,
    payloads,
    reasons_of,
    reject,
    reopen_cmd,
    revert_cmd,
    reverted,
    run,
    title_cmd,
)

PRECONDITION = outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION
NOT_FOUND = outcome_pb2.VIOLATION_KIND_NOT_FOUND


def now_ts() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(NOW)
    return stamp


def not_open(reason: str = "PULL_REQUEST_NOT_OPEN"):
    return [(PRECONDITION, reason, "", PR)]


# --- open ---------------------------------------------------------------------------------


def test_open_emits_one_opened_event_at_version_1():
    command = open_cmd(command_id="c-open")
    decision = decide(None, command, now=NOW)
    assert decision == Accepted(
        (
            events_pb2.EventEnvelope(
                event_id=event_id("c-open", 1),
                pull_request_id=PR,
                version=1,
                command_id="c-open",
                occurred_at=now_ts(),
                pull_request_opened=events_pb2.PullRequestOpened(
                    repository="octo/widgets",
                    title="Add the frobnicator",
                    description="It frobs.\nAnd nicates.",
                    author=AUTHOR,
                    source_branch="feature/frob",
                    target_branch="main",
                ),
            ),
        )
    )


def test_a_new_pull_request_is_open_at_version_1():
    assert opened() == pull_request_pb2.PullRequest(
        pull_request_id=PR,
        repository="octo/widgets",
        title="Add the frobnicator",
        description="It frobs.\nAnd nicates.",
        author=AUTHOR,
        source_branch="feature/frob",
        target_branch="main",
        status=OPEN,
        version=1,
        created_at=now_ts(),
        updated_at=now_ts(),
    )


@pytest.mark.parametrize("state", [opened, merged, closed, reverted])
def test_an_existing_id_cannot_be_opened_again(state):
    rejected = reject(state(), open_cmd())
    assert reasons_of(rejected) == [(PRECONDITION, "PULL_REQUEST_ALREADY_EXISTS", "", PR)]


# --- not found ----------------------------------------------------------------------------

ON_EXISTING = [
    title_cmd("New"),
    approve_cmd("bob"),
    check_cmd("ci", SUCCESS),
    merge_cmd(),
    close_cmd(),
    reopen_cmd(),
    revert_cmd(),
]


@pytest.mark.parametrize("command", ON_EXISTING)
@pytest.mark.parametrize("state", [None, pull_request_pb2.PullRequest()])
def test_commands_on_a_missing_pull_request_are_not_found(command, state):
    rejected = reject(state, command)
    assert reasons_of(rejected) == [(NOT_FOUND, "PULL_REQUEST_NOT_FOUND", "", PR)]


# --- change title -------------------------------------------------------------------------


def test_change_title_while_open():
    state, events = accept(opened(), title_cmd("Better title", changed_by="bob"))
    assert payloads(events) == [
        events_pb2.PullRequestTitleChanged(
            old_title="Add the frobnicator", new_title="Better title", changed_by="bob"
        )
    ]
    assert [e.version for e in events] == [2]
    assert state.title == "Better title"
    assert state.version == 2


def test_the_same_title_changes_nothing():
    assert decide(opened(), title_cmd("Add the frobnicator"), now=NOW) == Accepted(())


@pytest.mark.parametrize("state", [merged, closed, reverted])
def test_change_title_only_while_open(state):
    assert reasons_of(reject(state(), title_cmd("New"))) == not_open()


# --- approve ------------------------------------------------------------------------------


def test_approve_while_open():
    state, events = accept(opened(), approve_cmd("bob"))
    assert payloads(events) == [events_pb2.PullRequestApproved(reviewer="bob")]
    assert list(state.reviews) == [pull_request_pb2.Review(reviewer="bob", approved_at=now_ts())]


def test_the_author_cannot_approve_their_own_pull_request():
    rejected = reject(opened(), approve_cmd(AUTHOR))
    assert reasons_of(rejected) == [(PRECONDITION, "SELF_APPROVAL", "", AUTHOR)]


def test_a_repeated_approval_changes_nothing():
    state = run(open_cmd(), approve_cmd("bob"))
    assert decide(state, approve_cmd("bob"), now=NOW) == Accepted(())


def test_approvals_keep_their_order():
    state = run(open_cmd(), approve_cmd("bob"), approve_cmd("carol"), approve_cmd("bob"))
    assert [r.reviewer for r in state.reviews] == ["bob", "carol"]
    assert state.version == 3


@pytest.mark.parametrize("state", [merged, closed, reverted])
def test_approve_only_while_open(state):
    assert reasons_of(reject(state(), approve_cmd("dave"))) == not_open()
    # The status rule comes first: not also a self-approval.
    assert reasons_of(reject(state(), approve_cmd(AUTHOR))) == not_open()


# --- record check result ------------------------------------------------------------------


def test_record_check_result_while_open():
    state, events = accept(opened(), check_cmd("ci", PENDING))
    assert payloads(events) == [events_pb2.CheckResultRecorded(check_name="ci", conclusion=PENDING)]
    assert list(state.checks) == [
        pull_request_pb2.CheckResult(check_name="ci", conclusion=PENDING, recorded_at=now_ts())
    ]


def test_the_latest_result_per_check_name_wins_in_first_reported_order():
    state = run(
        open_cmd(),
        check_cmd("lint", FAILURE),
        check_cmd("ci", PENDING),
        check_cmd("lint", SUCCESS),
        check_cmd("ci", FAILURE),
    )
    assert [(c.check_name, c.conclusion) for c in state.checks] == [
        ("lint", SUCCESS),
        ("ci", FAILURE),
    ]
    assert state.version == 5


def test_a_repeated_result_is_still_recorded():
    state, events = accept(run(open_cmd(), check_cmd("ci", SUCCESS)), check_cmd("ci", SUCCESS))
    assert len(events) == 1
    assert state.version == 3


@pytest.mark.parametrize("state", [merged, closed, reverted])
def test_record_check_result_only_while_open(state):
    assert reasons_of(reject(state(), check_cmd("ci", SUCCESS))) == not_open()


# --- merge --------------------------------------------------------------------------------


def test_merge_emits_merged_then_status_changed():
    state, events = accept(mergeable(), merge_cmd(user="bob", command_id="c-merge"))
    assert [(e.version, e.event_id, e.command_id) for e in events] == [
        (4, event_id("c-merge", 4), "c-merge"),
        (5, event_id("c-merge", 5), "c-merge"),
    ]
    assert payloads(events) == [
        events_pb2.PullRequestMerged(
            merged_by_user="bob", commit_message="Merge pull request pr-1: Add the frobnicator"
        ),
        events_pb2.PullRequestStatusChanged(from_status=OPEN, to_status=MERGED, actor="bob"),
    ]
    assert state.status == MERGED
    assert state.merge == pull_request_pb2.MergeInfo(
        merged_by_user="bob",
        commit_message="Merge pull request pr-1: Add the frobnicator",
        merged_at=now_ts(),
    )


def test_the_commit_message_override_wins():
    _, events = accept(mergeable(), merge_cmd(override="Ship it\n\nbody"))
    assert events[0].pull_request_merged.commit_message == "Ship it\n\nbody"


def test_a_blank_override_falls_back_to_the_title():
    _, events = accept(mergeable(), merge_cmd(override="   "))
    assert events[0].pull_request_merged.commit_message.startswith("Merge pull request pr-1: ")


def test_the_author_may_merge_once_someone_else_approved():
    state, _ = accept(mergeable(), merge_cmd(user=AUTHOR))
    assert state.status == MERGED


def test_merge_needs_an_approval():
    rejected = reject(opened(), merge_cmd())
    assert reasons_of(rejected) == [(PRECONDITION, "NOT_APPROVED", "", PR)]


def test_merge_needs_the_configured_number_of_approvals():
    two = Policy(required_approvals=2)
    state = run(open_cmd(), approve_cmd("bob"))
    assert reasons_of(reject(state, merge_cmd(), two)) == [(PRECONDITION, "NOT_APPROVED", "", PR)]
    state, _ = accept(state, approve_cmd("carol"), two)
    state, _ = accept(state, merge_cmd(), two)
    assert state.status == MERGED


def test_with_zero_required_approvals_an_unreviewed_pull_request_merges():
    state, _ = accept(opened(), merge_cmd(), Policy(required_approvals=0))
    assert state.status == MERGED


def test_an_approval_by_the_author_does_not_count():
    # Not reachable through decide (SELF_APPROVAL), but a state from elsewhere must not merge.
    state = opened()
    state.reviews.add(reviewer=AUTHOR)
    assert reasons_of(reject(state, merge_cmd())) == [(PRECONDITION, "NOT_APPROVED", "", PR)]


def test_every_blocking_check_is_named():
    state = run(
        open_cmd(),
        approve_cmd("bob"),
        check_cmd("lint", FAILURE),
        check_cmd("unit", SUCCESS),
        check_cmd("e2e", PENDING),
    )
    rejected = reject(state, merge_cmd())
    assert reasons_of(rejected) == [
        (PRECONDITION, "CHECKS_NOT_PASSING", "", "lint"),
        (PRECONDITION, "CHECKS_NOT_PASSING", "", "e2e"),
    ]
    assert [v.description for v in rejected.violations] == [
        "check lint is FAILURE, not SUCCESS",
        "check e2e is PENDING, not SUCCESS",
    ]


def test_missing_approval_and_failing_checks_are_reported_together():
    state = run(open_cmd(), check_cmd("ci", FAILURE))
    assert reasons_of(reject(state, merge_cmd())) == [
        (PRECONDITION, "NOT_APPROVED", "", PR),
        (PRECONDITION, "CHECKS_NOT_PASSING", "", "ci"),
    ]


def test_a_check_that_recovers_unblocks_the_merge():
    state = run(open_cmd(), approve_cmd("bob"), check_cmd("ci", FAILURE), check_cmd("ci", SUCCESS))
    state, _ = accept(state, merge_cmd())
    assert state.status == MERGED


@pytest.mark.parametrize("state", [merged, closed, reverted])
def test_merge_only_while_open(state):
    assert reasons_of(reject(state(), merge_cmd())) == not_open()


# --- close, reopen, revert ----------------------------------------------------------------


def test_close_while_open():
    state, events = accept(opened(), close_cmd(actor="bob"))
    assert payloads(events) == [
        events_pb2.PullRequestClosed(actor="bob"),
        events_pb2.PullRequestStatusChanged(from_status=OPEN, to_status=CLOSED, actor="bob"),
    ]
    assert [e.version for e in events] == [2, 3]
    assert state.status == CLOSED
    assert state.closed_at == now_ts()


@pytest.mark.parametrize("state", [merged, closed, reverted])
def test_close_only_while_open(state):
    assert reasons_of(reject(state(), close_cmd())) == not_open()


def test_reopen_while_closed():
    state, events = accept(closed(), reopen_cmd(actor="bob"))
    assert payloads(events) == [
        events_pb2.PullRequestReopened(actor="bob"),
        events_pb2.PullRequestStatusChanged(from_status=CLOSED, to_status=OPEN, actor="bob"),
    ]
    assert [e.version for e in events] == [4, 5]
    assert state.status == OPEN
    assert not state.HasField("closed_at")


@pytest.mark.parametrize("state", [opened, merged, reverted])
def test_reopen_only_while_closed(state):
    assert reasons_of(reject(state(), reopen_cmd())) == not_open("PULL_REQUEST_NOT_CLOSED")


def test_revert_while_merged():
    state, events = accept(merged(), revert_cmd(actor="carol", reason="broke main"))
    assert payloads(events) == [
        events_pb2.PullRequestReverted(actor="carol", reason="broke main"),
        events_pb2.PullRequestStatusChanged(from_status=MERGED, to_status=REVERTED, actor="carol"),
    ]
    assert state.status == REVERTED
    assert state.revert == pull_request_pb2.RevertInfo(
        reverted_by="carol", reason="broke main", reverted_at=now_ts()
    )
    assert state.merge.merged_by_user == "bob"  # the merge stays on record


@pytest.mark.parametrize("state", [opened, closed, reverted])
def test_revert_only_while_merged(state):
    assert reasons_of(reject(state(), revert_cmd())) == not_open("PULL_REQUEST_NOT_MERGED")


def test_a_reopened_pull_request_can_be_merged():
    state = run(open_cmd(), close_cmd(), reopen_cmd(), approve_cmd("bob"), merge_cmd())
    assert state.status == MERGED
    assert state.version == 8
