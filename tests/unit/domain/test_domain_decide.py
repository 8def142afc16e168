"""decide(): the order of the checks, expected_version, event metadata and purity."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from prgate.domain import (
    EVENT_ID_NAMESPACE,
    Accepted,
    Rejected,
    command_type_name,
    decide,
    event_id,
    exists,
    pull_request_id_of,
)
from prgate.domain.decide import MAX_VERSION
from prgate.v1 import outcome_pb2
from tests.unit.domain.domain_builders import (
    NOW,
    PR,
    accept,
    approve_cmd,
    check_cmd,
    close_cmd,
    merge_cmd,
    open_cmd,
    opened,
    reasons_of,
    reject,
    reopen_cmd,
    revert_cmd,
    title_cmd,
)

INVALID = outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT
NOT_FOUND = outcome_pb2.VIOLATION_KIND_NOT_FOUND
CONFLICT = outcome_pb2.VIOLATION_KIND_VERSION_CONFLICT
PRECONDITION = outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION


def test_a_matching_expected_version_is_accepted():
    state, events = accept(opened(), approve_cmd("bob", expected_version=1))
    assert [e.version for e in events] == [2]
    assert state is not None
    accept(state, merge_cmd(expected_version=2))


def test_a_different_expected_version_is_a_version_conflict():
    rejected = reject(opened(), approve_cmd("bob", expected_version=2))
    assert reasons_of(rejected) == [(CONFLICT, "VERSION_CONFLICT", "", PR)]
    assert rejected.violations[0].description == (
        "expected version 2, pull request pr-1 is at version 1"
    )


def test_open_with_expected_version_0_means_it_must_not_exist():
    accept(None, open_cmd(expected_version=0))
    assert reasons_of(reject(None, open_cmd(expected_version=1))) == [
        (CONFLICT, "VERSION_CONFLICT", "", PR)
    ]
    assert reasons_of(reject(opened(), open_cmd(expected_version=0))) == [
        (CONFLICT, "VERSION_CONFLICT", "", PR)
    ]


def test_field_rules_come_before_not_found():
    rejected = reject(None, approve_cmd("", expected_version=3))
    assert reasons_of(rejected) == [(INVALID, "REVIEWER_REQUIRED", "command.reviewer", "")]


def test_not_found_comes_before_the_version_check():
    rejected = reject(None, approve_cmd("bob", expected_version=3))
    assert reasons_of(rejected) == [(NOT_FOUND, "PULL_REQUEST_NOT_FOUND", "", PR)]


def test_the_version_check_comes_before_the_state_rules():
    rejected = reject(opened(), merge_cmd(expected_version=7))
    assert reasons_of(rejected) == [(CONFLICT, "VERSION_CONFLICT", "", PR)]


def test_a_pull_request_at_the_int64_limit_takes_no_more_events():
    state = opened()
    state.version = MAX_VERSION - 1
    rejected = reject(state, close_cmd())
    assert reasons_of(rejected) == [(PRECONDITION, "VERSION_LIMIT_REACHED", "", PR)]


def test_event_ids_are_uuid5_of_command_id_and_version():
    assert uuid.uuid5(uuid.NAMESPACE_DNS, "prgate.v1.EventEnvelope") == EVENT_ID_NAMESPACE
    assert event_id("c-1", 3) == str(uuid.uuid5(EVENT_ID_NAMESPACE, "c-1:3"))
    assert event_id("c-1", 3) != event_id("c-1", 4) != event_id("c-2", 4)


def test_deciding_twice_gives_identical_events():
    command = close_cmd(command_id="c-close")
    assert decide(opened(), command, now=NOW) == decide(opened(), command, now=NOW)


def test_occurred_at_is_now_and_a_naive_now_is_utc():
    decision = decide(None, open_cmd(), now=datetime(2024, 1, 2, 3, 4, 5, 600_000))
    assert isinstance(decision, Accepted)
    occurred = decision.events[0].occurred_at
    assert (occurred.seconds, occurred.nanos) == (1704164645, 600_000_000)


@pytest.mark.parametrize(
    "command",
    [
        title_cmd("Other"),
        approve_cmd("bob"),
        approve_cmd("alice"),
        check_cmd("ci", 2),
        merge_cmd(),
        close_cmd(),
        reopen_cmd(),
        revert_cmd(),
        open_cmd(),
    ],
)
def test_decide_never_mutates_its_inputs(command):
    state = opened()
    state_before = state.SerializeToString(deterministic=True)
    command_before = command.SerializeToString(deterministic=True)
    decide(state, command, now=NOW)
    assert state.SerializeToString(deterministic=True) == state_before
    assert command.SerializeToString(deterministic=True) == command_before


def test_a_rejection_needs_a_violation():
    with pytest.raises(ValueError, match="at least one violation"):
        Rejected(())


def test_exists_means_opened():
    assert not exists(None)
    assert not exists(opened().__class__())
    assert exists(opened())


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (open_cmd(), "OpenPullRequest"),
        (title_cmd("x"), "ChangePullRequestTitle"),
        (approve_cmd("b"), "ApprovePullRequest"),
        (check_cmd("ci", 1), "RecordCheckResult"),
        (merge_cmd(), "MergePullRequest"),
        (close_cmd(), "ClosePullRequest"),
        (reopen_cmd(), "ReopenPullRequest"),
        (revert_cmd(), "RevertPullRequest"),
    ],
)
def test_command_type_name(command, name):
    assert command_type_name(command) == name
    command.ClearField(command.WhichOneof("command"))
    assert command_type_name(command) == ""


def test_pull_request_id_of():
    assert pull_request_id_of(open_cmd(pr="pr-9")) == "pr-9"
    assert pull_request_id_of(approve_cmd("b", pr="pr-7")) == "pr-7"
    assert pull_request_id_of(approve_cmd("b", pr="", pull_request_id="pr-8")) == "pr-8"
