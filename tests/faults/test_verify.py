"""The verifier itself (no broker): each broken invariant is caught, a clean history passes.

A fault test that passes is only worth something if ``verify.check`` would have failed on a
lost command, a repeated event or a snapshot that is not the fold of its events.
"""

from __future__ import annotations

from prgate.v1.events_pb2 import EventEnvelope, PullRequestOpened, PullRequestTitleChanged
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED, ProcessedCommand
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from processor.domain import fold
from tests.faults.verify import CommandEntry, Verdict, check


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
    entries = {
        "c1": CommandEntry("c1", "OpenPullRequest", "pr-1", sends=1, accepted=True),
        "c2": CommandEntry("c2", "ChangePullRequestTitle", "pr-1", sends=1, accepted=True),
    }
    snapshot = fold([e1, e2])
    assert snapshot is not None
    snapshot.recent_commands.add(command_id="c2")  # bookkeeping: ignored by the comparison
    return (
        entries,
        [result("c1", "pr-1", [e1]), result("c2", "pr-1", [e2])],
        [e1, e2],
        {"pr-1": snapshot},
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
