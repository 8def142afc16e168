"""evolve(): fold one event into a new PullRequest. Pure: inputs are never mutated.

Events are facts, so evolve applies them without judging them; the rules live in decide().
Only PullRequestStatusChanged changes ``status``: PullRequestMerged, -Closed, -Reopened and
-Reverted record who/when/why. A snapshot is ``fold(events)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prgate.v1 import events_pb2, pull_request_pb2

PullRequest = pull_request_pb2.PullRequest
EventEnvelope = events_pb2.EventEnvelope


def _opened(state: PullRequest, event: EventEnvelope) -> None:
    opened = event.pull_request_opened
    # Opening starts afresh; only the processing metadata carries over.
    recent = list(state.recent_commands)
    state.Clear()
    state.recent_commands.extend(recent)
    state.pull_request_id = event.pull_request_id
    state.repository = opened.repository
    state.title = opened.title
    state.description = opened.description
    state.author = opened.author
    state.source_branch = opened.source_branch
    state.target_branch = opened.target_branch
    state.status = pull_request_pb2.PULL_REQUEST_STATUS_OPEN
    state.created_at.CopyFrom(event.occurred_at)


def _title_changed(state: PullRequest, event: EventEnvelope) -> None:
    state.title = event.pull_request_title_changed.new_title


def _approved(state: PullRequest, event: EventEnvelope) -> None:
    reviewer = event.pull_request_approved.reviewer
    if all(review.reviewer != reviewer for review in state.reviews):
        state.reviews.add(reviewer=reviewer, approved_at=event.occurred_at)


def _check_recorded(state: PullRequest, event: EventEnvelope) -> None:
    recorded = event.check_result_recorded
    for check in state.checks:
        if check.check_name == recorded.check_name:
            check.conclusion = recorded.conclusion
            check.recorded_at.CopyFrom(event.occurred_at)
            return
    state.checks.add(
        check_name=recorded.check_name,
        conclusion=recorded.conclusion,
        recorded_at=event.occurred_at,
    )


def _status_changed(state: PullRequest, event: EventEnvelope) -> None:
    state.status = event.pull_request_status_changed.to_status


def _merged(state: PullRequest, event: EventEnvelope) -> None:
    merged = event.pull_request_merged
    state.merge.merged_by_user = merged.merged_by_user
    state.merge.commit_message = merged.commit_message
    state.merge.merged_at.CopyFrom(event.occurred_at)


def _closed(state: PullRequest, event: EventEnvelope) -> None:
    state.closed_at.CopyFrom(event.occurred_at)


def _reopened(state: PullRequest, event: EventEnvelope) -> None:
    state.ClearField("closed_at")


def _reverted(state: PullRequest, event: EventEnvelope) -> None:
    reverted = event.pull_request_reverted
    state.revert.reverted_by = reverted.actor
    state.revert.reason = reverted.reason
    state.revert.reverted_at.CopyFrom(event.occurred_at)


# Keyed by EventEnvelope oneof field name; each mutates the fresh copy made by evolve().
_APPLY: dict[str, Callable[[PullRequest, EventEnvelope], None]] = {
    "pull_request_opened": _opened,
    "pull_request_title_changed": _title_changed,
    "pull_request_approved": _approved,
    "check_result_recorded": _check_recorded,
    "pull_request_status_changed": _status_changed,
    "pull_request_merged": _merged,
    "pull_request_closed": _closed,
    "pull_request_reopened": _reopened,
    "pull_request_reverted": _reverted,
}


def evolve(state: PullRequest | None, event: EventEnvelope) -> PullRequest:
    """The pull request after ``event``: a new message, ``state`` is left as it was.

    Sets ``version = event.version`` and ``updated_at = event.occurred_at``. An event without a
    payload (written by a newer version with an event type this one does not know) only moves
    the version.
    """
    new = PullRequest()
    if state is not None:
        new.CopyFrom(state)
    which = event.WhichOneof("event")
    if which is not None:
        _APPLY[which](new, event)
    if not new.pull_request_id:
        new.pull_request_id = event.pull_request_id
    new.version = event.version
    if event.HasField("occurred_at"):
        new.updated_at.CopyFrom(event.occurred_at)
    else:
        new.ClearField("updated_at")
    return new


def fold(events: Iterable[EventEnvelope], state: PullRequest | None = None) -> PullRequest | None:
    """Apply ``events`` in order to ``state``; None when there are none and no state."""
    for event in events:
        state = evolve(state, event)
    return state
