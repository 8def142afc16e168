"""The verifier itself (no broker): each broken invariant is caught, a clean history passes.

A fault test that passes is only worth something if ``verify.check`` would have failed on a
lost command, a repeated event, a snapshot that is not the fold of its events, an answer to a
client that the results topic contradicts (a gateway that lied), or a load that never ran
across the fault.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from prgate.domain import fold
from prgate.v1.events_pb2 import EventEnvelope, PullRequestOpened, PullRequestTitleChanged
from prgate.v1.outcome_pb2 import (
    COMMAND_STATE_REJECTED,
    COMMAND_STATE_SUCCEEDED,
    VIOLATION_KIND_FAILED_PRECONDITION,
    ProcessedCommand,
    Violation,
)
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from tests.faults.ledger import Answer, CommandEntry
from tests.faults.verify import Verdict, assert_load_across_faults, assert_load_after, check


def event(pr: str, version: int, command_id: str, title: str = "") -> EventEnvelope:
    out = EventEnvelope(
        event_id=f"{command_id}-{version}",
        pull_request_id=pr,
        version=version,
        command_id=command_id,
    )
    if version == 1:
        out.pull_request_opened.CopyFrom(
            PullRequestOpened(repository="a/b", title="t", author="ada")
        )
    else:
        out.pull_request_title_changed.CopyFrom(
            PullRequestTitleChanged(new_title=title or f"v{version}")
        )
    return out


def result(
    command_id: str, pr: str, events: list[EventEnvelope], duplicate: bool = False
) -> CommandResult:
    return CommandResult(
        command_id=command_id,
        pull_request_id=pr,
        state=COMMAND_STATE_SUCCEEDED,
        version=events[-1].version if events else 0,
        events=[] if duplicate else events,
        duplicate=duplicate,
    )


def clean() -> tuple[
    dict[str, CommandEntry], list[CommandResult], list[EventEnvelope], dict[str, PullRequest]
]:
    e1, e2 = event("pr-1", 1, "c1"), event("pr-1", 2, "c2")
    r1, r2 = result("c1", "pr-1", [e1]), result("c2", "pr-1", [e2])
    entries = {
        "c1": CommandEntry(
            "c1",
            "OpenPullRequest",
            "pr-1",
            sends=1,
            accepted=True,
            answers=[told_ok("c1", "COMMAND_STATE_SUCCEEDED", r1)],
            accepted_at=10.0,
        ),
        "c2": CommandEntry(
            "c2",
            "ChangePullRequestTitle",
            "pr-1",
            sends=1,
            accepted=True,
            answers=[told_ok("c2", "COMMAND_STATE_ACCEPTED")],
            accepted_at=20.0,
        ),
    }
    snapshot = fold([e1, e2])
    assert snapshot is not None
    snapshot.recent_commands.add(command_id="c2")  # bookkeeping: ignored by the comparison
    return (
        entries,
        [r1, r2],
        [e1, e2],
        {"pr-1": snapshot},
    )


def told_ok(command_id: str, state: str, carried: CommandResult | None = None) -> Answer:
    """An OK answer with a receipt in ``state``, carrying ``carried`` as its result."""
    copy = None
    if carried is not None:
        copy = CommandResult()
        copy.CopyFrom(carried)
    return Answer("OK", state, "", command_id, "pr-1", copy, at=1.0)


def rejected(command_id: str, reason: str = "PULL_REQUEST_NOT_OPEN") -> CommandResult:
    return CommandResult(
        command_id=command_id,
        pull_request_id="pr-1",
        state=COMMAND_STATE_REJECTED,
        version=2,
        violations=[
            Violation(kind=VIOLATION_KIND_FAILED_PRECONDITION, reason=reason, description="no")
        ],
    )


def problems(verdict: Verdict) -> str:
    return " | ".join(verdict.problems())


def test_a_clean_history_passes() -> None:
    verdict = check(*clean())
    assert verdict.problems() == []
    assert (verdict.accepted, verdict.completed, verdict.events, verdict.pull_requests) == (
        2,
        2,
        2,
        1,
    )
    assert verdict.answers_checked == 2


def test_an_accepted_command_without_result_is_lost() -> None:
    entries, results, events, snapshots = clean()
    entries["c3"] = CommandEntry("c3", "ApprovePullRequest", "pr-1", sends=1, accepted=True)
    assert problems(check(entries, results, events, snapshots)).startswith("lost (1)")


def test_two_results_and_an_unexplained_duplicate_are_caught() -> None:
    entries, results, events, snapshots = clean()
    results.append(results[0])
    results.append(result("c2", "pr-1", [], duplicate=True))
    text = problems(check(entries, results, events, snapshots))
    assert "double_results (1)" in text and "unexpected_duplicates (1)" in text
    # A duplicate answer is fine for a command that was sent twice.
    entries["c2"].sends = 2
    assert "unexpected_duplicates" not in problems(check(entries, results, events, snapshots))


def test_a_duplicate_result_needs_a_second_record_on_the_commands_topic() -> None:
    """Each command record is answered exactly once: a command sent once whose record the
    gateway's idempotent producer wrote twice (in-flight requests timed out across a broker
    restart) may have one duplicate=True result, no more; a record on the topic once may not
    have any, however often the client sent it (a retry the gateway refused is no record)."""
    entries, results, events, snapshots = clean()
    results.append(result("c2", "pr-1", [], duplicate=True))
    rewritten = check(entries, results, events, snapshots, {"c1": 1, "c2": 2})
    assert rewritten.problems() == []
    assert rewritten.rewritten_commands == ["c2: 2 records, sent 1 time(s)"]
    assert "rewritten_commands=1" in rewritten.summary()

    once = problems(check(entries, results, events, snapshots, {"c1": 1, "c2": 1}))
    assert "unexpected_duplicates (1)" in once and "for 1 record(s)" in once, once
    entries["c2"].sends = 2  # a second send that never became a record
    assert "unexpected_duplicates (1)" in problems(
        check(entries, results, events, snapshots, {"c1": 1, "c2": 1})
    )
    entries["c2"].sends = 1
    results.append(result("c2", "pr-1", [], duplicate=True))  # two copies answered, one made
    assert "unexpected_duplicates (1)" in problems(
        check(entries, results, events, snapshots, {"c1": 1, "c2": 2})
    )
    assert check(entries, results, events, snapshots, {"c1": 1, "c2": 3}).problems() == []


def test_gaps_repeats_and_foreign_events_are_caught() -> None:
    entries, results, events, snapshots = clean()
    repeated = check(entries, results, [*events, events[1]], snapshots)
    assert repeated.duplicated_events >= 1 and repeated.version_errors
    gap = event("pr-1", 4, "c2")
    assert check(entries, results, [*events, gap], snapshots).version_errors
    orphan = event("pr-2", 1, "nobody")
    assert "event_result_errors" in problems(check(entries, results, [*events, orphan], snapshots))


def test_a_snapshot_that_is_not_the_fold_is_caught() -> None:
    entries, results, events, snapshots = clean()
    snapshots["pr-1"].title = "edited behind the processor's back"
    assert "snapshot_errors (1)" in problems(check(entries, results, events, snapshots))
    del snapshots["pr-1"]
    assert "snapshot_errors (1)" in problems(check(entries, results, events, snapshots))


def test_recent_commands_alone_do_not_count() -> None:
    entries, results, events, snapshots = clean()
    snapshots["pr-1"].recent_commands.append(ProcessedCommand(command_id="c1"))
    assert check(entries, results, events, snapshots).problems() == []


History = tuple[
    dict[str, CommandEntry], list[CommandResult], list[EventEnvelope], dict[str, PullRequest]
]


def _rejected_told_succeeded(h: History) -> None:
    entries, results, _, _ = h
    results.append(rejected("c3"))
    entries["c3"] = CommandEntry(
        "c3",
        "ApprovePullRequest",
        "pr-1",
        sends=1,
        accepted=True,
        answers=[told_ok("c3", "COMMAND_STATE_SUCCEEDED")],
    )


def _another_commands_cached_result(h: History) -> None:
    entries, results, _, _ = h
    # The gateway's receipt is built from the result it found: c1's, for the call of c2.
    entries["c2"].answers[0] = told_ok("c1", "COMMAND_STATE_SUCCEEDED", results[0])


def _receipt_names_another_command(h: History) -> None:
    entries, results, _, _ = h
    entries["c2"].answers[0] = told_ok("c1", "COMMAND_STATE_SUCCEEDED", results[1])


def _result_of_another_command_under_this_id(h: History) -> None:
    entries, results, _, _ = h
    entries["c2"].answers[0] = told_ok("c2", "COMMAND_STATE_SUCCEEDED", results[0])


def _wrong_version(h: History) -> None:
    entries, results, _, _ = h
    told = CommandResult()
    told.CopyFrom(results[1])
    told.version = 7
    entries["c2"].answers[0] = told_ok("c2", "COMMAND_STATE_SUCCEEDED", told)


def _wrong_events(h: History) -> None:
    entries, results, _, _ = h
    told = CommandResult()
    told.CopyFrom(results[1])
    del told.events[:]
    entries["c2"].answers[0] = told_ok("c2", "COMMAND_STATE_SUCCEEDED", told)


def _retry_told_another_version(h: History) -> None:
    entries, results, _, _ = h
    told = CommandResult()
    told.CopyFrom(results[0])
    del told.events[:]
    told.duplicate = True
    told.version = 2
    entries["c1"].sends = 2
    entries["c1"].answers.append(told_ok("c1", "COMMAND_STATE_SUCCEEDED", told))


def _refused_but_succeeded(h: History) -> None:
    entries, _, _, _ = h
    entries["c2"].answers.append(
        Answer("FAILED_PRECONDITION", "", "PULL_REQUEST_NOT_OPEN", "c2", "pr-1", at=2.0)
    )


def _refused_with_another_reason(h: History) -> None:
    entries, results, _, _ = h
    results.append(rejected("c3", "NOT_APPROVED"))
    entries["c3"] = CommandEntry(
        "c3",
        "MergePullRequest",
        "pr-1",
        sends=1,
        accepted=False,
        answers=[Answer("FAILED_PRECONDITION", "", "CHECKS_NOT_PASSING", "c3", "pr-1")],
    )


def _failed_but_succeeded(h: History) -> None:
    entries, _, _, _ = h
    entries["c2"].answers.append(Answer("ABORTED", "", "COMMAND_FAILED", "c2", "pr-1"))


def _succeeded_without_result(h: History) -> None:
    entries, _, _, _ = h
    entries["c4"] = CommandEntry(
        "c4",
        "ApprovePullRequest",
        "pr-1",
        sends=1,
        accepted=False,
        answers=[told_ok("c4", "COMMAND_STATE_REJECTED")],
    )


LIES: dict[str, Callable[[History], None]] = {
    "SUCCEEDED for a command the processor REJECTED": _rejected_told_succeeded,
    "another command's cached result": _another_commands_cached_result,
    "a receipt naming another command id": _receipt_names_another_command,
    "a receipt carrying another command's result": _result_of_another_command_under_this_id,
    "a receipt with the wrong version": _wrong_version,
    "a receipt without the command's events": _wrong_events,
    "an idempotent retry answered with another version": _retry_told_another_version,
    "a refusal for a command that SUCCEEDED": _refused_but_succeeded,
    "a refusal with another reason than the processor's": _refused_with_another_reason,
    "COMMAND_FAILED for a command that SUCCEEDED": _failed_but_succeeded,
    "REJECTED told, no result on Kafka": _succeeded_without_result,
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_each_lie_to_a_client_is_caught(lie: str) -> None:
    history = clean()
    LIES[lie](history)
    verdict = check(*history)
    assert "answer_errors (1)" in problems(verdict), problems(verdict)
    with pytest.raises(AssertionError, match="answer_errors"):
        verdict.assert_ok()


def test_honest_answers_of_every_kind_pass() -> None:
    """A refusal before producing (no result), the processor's rejection with its reason, a
    refusal then an accepted retry, a duplicate answer with the original's version, and
    answers that say nothing about the outcome are all consistent with Kafka."""
    entries, results, events, snapshots = clean()
    results.append(rejected("c3"))
    entries["c3"] = CommandEntry(
        "c3",
        "ApprovePullRequest",
        "pr-1",
        sends=1,
        accepted=False,
        answers=[Answer("FAILED_PRECONDITION", "", "PULL_REQUEST_NOT_OPEN", "c3", "pr-1")],
    )
    entries["c5"] = CommandEntry(
        "c5",
        "ApprovePullRequest",
        "pr-1",
        sends=2,
        accepted=False,
        answers=[Answer("NOT_FOUND", "", "PULL_REQUEST_NOT_FOUND"), Answer("UNAVAILABLE")],
    )
    duplicate = CommandResult()
    duplicate.CopyFrom(results[0])
    del duplicate.events[:]
    duplicate.duplicate = True
    entries["c1"].sends = 2
    entries["c1"].answers.append(told_ok("c1", "COMMAND_STATE_SUCCEEDED", duplicate))
    entries["c2"].answers.insert(
        0, Answer("FAILED_PRECONDITION", "", "PULL_REQUEST_NOT_OPEN", "c2", "pr-1")
    )
    entries["c2"].sends = 2
    verdict = check(entries, results, events, snapshots)
    assert verdict.problems() == []
    # c1 twice, c2 twice (the pre-check refusal and the ACCEPTED), c3, c5's refusal.
    assert verdict.answers_checked == 6


def test_a_load_that_did_not_run_after_the_fault_fails() -> None:
    """c1 was accepted at 10 s and c2 at 20 s (time.monotonic()): a fault at 15 s has one
    command after it, a fault at 25 s none, an empty ledger nothing at all."""
    verdict = check(*clean())
    assert assert_load_after(verdict, 15.0, min_accepted=1, min_completed=1) == (1, 1)
    with pytest.raises(AssertionError, match="did not run across"):
        assert_load_after(verdict, 15.0, min_accepted=2, min_completed=1)
    with pytest.raises(AssertionError, match="did not run across"):
        assert_load_after(verdict, 25.0, min_accepted=1, min_completed=1)
    with pytest.raises(AssertionError, match="did not run across"):
        assert_load_after(check({}, [], [], {}), 0.0, min_accepted=1, min_completed=1)
    with pytest.raises(AssertionError, match="minimum of 0"):
        assert_load_after(verdict, 0.0, min_accepted=0, min_completed=0)


def test_accepted_but_never_completed_after_the_fault_fails() -> None:
    entries, results, events, _ = clean()
    verdict = check(entries, results[:1], events[:1], {})
    with pytest.raises(AssertionError, match="1 commands accepted and 0 completed"):
        assert_load_after(verdict, 15.0, min_accepted=1, min_completed=1)


@pytest.mark.parametrize(
    ("faults", "passes"),
    [
        ([15.0], True),  # c2 (20 s) after the only fault
        ([5.0, 15.0], True),  # c1 between the faults, c2 after the last
        ([5.0, 8.0], False),  # nothing between the first fault and the second
        ([25.0], False),  # nothing after the fault: the load ended before it
        ([], False),  # no fault at all: nothing to run across
    ],
)
def test_load_across_each_fault(faults: list[float], passes: bool) -> None:
    verdict = check(*clean())
    if passes:
        assert_load_across_faults(verdict, faults, per_fault=1, after_last=1)
    else:
        with pytest.raises(AssertionError):
            assert_load_across_faults(verdict, faults, per_fault=1, after_last=1)
