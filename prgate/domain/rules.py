"""State rules: given an existing pull request (or none, for open), which events a command causes.

Each rule returns either a :class:`Rejected` of FAILED_PRECONDITION violations or the event
payloads in order (possibly none: the command changes nothing). Field rules have already passed.
"""

from __future__ import annotations

from prgate.v1 import commands_pb2, events_pb2, pull_request_pb2

from . import reasons
from .fields import canonical_repository
from .outcome import Rejected, failed_precondition
from .policy import Policy

PullRequest = pull_request_pb2.PullRequest
Status = pull_request_pb2.PullRequestStatus

OPEN = pull_request_pb2.PULL_REQUEST_STATUS_OPEN
MERGED = pull_request_pb2.PULL_REQUEST_STATUS_MERGED
CLOSED = pull_request_pb2.PULL_REQUEST_STATUS_CLOSED
REVERTED = pull_request_pb2.PULL_REQUEST_STATUS_REVERTED
SUCCESS = pull_request_pb2.CHECK_CONCLUSION_SUCCESS

# A refused merge names at most this many blocking checks, then one violation counts the rest:
# a rejection stays small (it is remembered in recent_commands, see prgate.domain.limits).
MAX_REPORTED_CHECKS = 5

# The only status changes a pull request can make (from, to).
ALLOWED_TRANSITIONS: frozenset[tuple[int, int]] = frozenset(
    {(OPEN, MERGED), (OPEN, CLOSED), (CLOSED, OPEN), (MERGED, REVERTED)}
)

EventPayload = (
    events_pb2.PullRequestOpened
    | events_pb2.PullRequestTitleChanged
    | events_pb2.PullRequestApproved
    | events_pb2.CheckResultRecorded
    | events_pb2.PullRequestStatusChanged
    | events_pb2.PullRequestMerged
    | events_pb2.PullRequestClosed
    | events_pb2.PullRequestReopened
    | events_pb2.PullRequestReverted
)
RuleOutcome = Rejected | tuple[EventPayload, ...]


def status_name(status: int) -> str:
    """``"OPEN"`` for PULL_REQUEST_STATUS_OPEN etc.; the number for an unknown value."""
    try:
        return Status.Name(status).removeprefix("PULL_REQUEST_STATUS_")
    except ValueError:
        return str(status)


def conclusion_name(conclusion: int) -> str:
    """``"SUCCESS"`` for CHECK_CONCLUSION_SUCCESS etc.; the number for an unknown value."""
    try:
        name = pull_request_pb2.CheckConclusion.Name(conclusion)
    except ValueError:
        return str(conclusion)
    return name.removeprefix("CHECK_CONCLUSION_")


def _require_status(state: PullRequest, wanted: int, reason: str) -> Rejected | None:
    if state.status == wanted:
        return None
    return Rejected(
        (
            failed_precondition(
                reason,
                state.pull_request_id,
                f"pull request {state.pull_request_id} is {status_name(state.status)}, "
                f"not {status_name(wanted)}",
            ),
        )
    )


def _status_changed(from_status: Status, to_status: Status, actor: str) -> EventPayload:
    return events_pb2.PullRequestStatusChanged(
        from_status=from_status,
        to_status=to_status,
        actor=actor,
    )


def non_author_approvers(state: PullRequest) -> set[str]:
    """The distinct reviewers who approved, not counting the author."""
    return {review.reviewer for review in state.reviews if review.reviewer != state.author}


def open_pull_request(
    state: PullRequest | None, pull_request_id: str, command: commands_pb2.OpenPullRequest
) -> RuleOutcome:
    """A new pull request; an id that already exists cannot be opened again."""
    if state is not None:
        return Rejected(
            (
                failed_precondition(
                    reasons.PULL_REQUEST_ALREADY_EXISTS,
                    pull_request_id,
                    f"pull request {pull_request_id} already exists",
                ),
            )
        )
    return (
        events_pb2.PullRequestOpened(
            repository=canonical_repository(command.repository),
            title=command.title,
            description=command.description,
            author=command.author,
            source_branch=command.source_branch,
            target_branch=command.target_branch,
        ),
    )


def change_title(state: PullRequest, command: commands_pb2.ChangePullRequestTitle) -> RuleOutcome:
    """Only while open; the same title again changes nothing."""
    rejected = _require_status(state, OPEN, reasons.PULL_REQUEST_NOT_OPEN)
    if rejected is not None:
        return rejected
    if command.title == state.title:
        return ()
    return (
        events_pb2.PullRequestTitleChanged(
            old_title=state.title, new_title=command.title, changed_by=command.changed_by
        ),
    )


def _one(reason: str, subject: str, description: str) -> Rejected:
    return Rejected((failed_precondition(reason, subject, description),))


def approve(
    state: PullRequest, command: commands_pb2.ApprovePullRequest, policy: Policy
) -> RuleOutcome:
    """Only while open, never by the author, at most ``policy.max_reviews`` reviewers; a
    repeated approval changes nothing."""
    rejected = _require_status(state, OPEN, reasons.PULL_REQUEST_NOT_OPEN)
    if rejected is not None:
        return rejected
    if command.reviewer == state.author:
        return Rejected(
            (
                failed_precondition(
                    reasons.SELF_APPROVAL,
                    command.reviewer,
                    "the author cannot approve their own pull request",
                ),
            )
        )
    if any(review.reviewer == command.reviewer for review in state.reviews):
        return ()
    if len(state.reviews) >= policy.max_reviews:
        return _one(
            reasons.TOO_MANY_REVIEWS,
            command.reviewer,
            f"pull request {state.pull_request_id} has approvals from {len(state.reviews)} "
            f"reviewers, at most {policy.max_reviews} are allowed",
        )
    return (events_pb2.PullRequestApproved(reviewer=command.reviewer),)


def record_check(
    state: PullRequest, command: commands_pb2.RecordCheckResult, policy: Policy
) -> RuleOutcome:
    """Only while open. Every report is recorded (the latest per check name wins), even one
    that repeats the current conclusion: it is a new observation with its own time. A check
    name not seen before needs room: at most ``policy.max_checks`` distinct names."""
    rejected = _require_status(state, OPEN, reasons.PULL_REQUEST_NOT_OPEN)
    if rejected is not None:
        return rejected
    if len(state.checks) >= policy.max_checks and all(
        check.check_name != command.check_name for check in state.checks
    ):
        return _one(
            reasons.TOO_MANY_CHECKS,
            command.check_name,
            f"pull request {state.pull_request_id} has {len(state.checks)} checks, at most "
            f"{policy.max_checks} distinct check names are allowed",
        )
    return (
        events_pb2.CheckResultRecorded(
            check_name=command.check_name, conclusion=command.conclusion
        ),
    )


def merge_commit_message(state: PullRequest, command: commands_pb2.MergePullRequest) -> str:
    """The override when given (not blank), else ``Merge pull request <id>: <title>``."""
    if command.commit_message_override.strip():
        return command.commit_message_override
    return f"Merge pull request {state.pull_request_id}: {state.title}"


def merge(
    state: PullRequest, command: commands_pb2.MergePullRequest, policy: Policy
) -> RuleOutcome:
    """Only while open, with enough non-author approvals and every reported check SUCCESS.

    Reports every unmet condition: NOT_APPROVED and one CHECKS_NOT_PASSING per blocking check
    (subject = the check name), at most :data:`MAX_REPORTED_CHECKS` of them; when more checks
    block, one more CHECKS_NOT_PASSING (subject = the pull request id) counts the others.
    """
    rejected = _require_status(state, OPEN, reasons.PULL_REQUEST_NOT_OPEN)
    if rejected is not None:
        return rejected
    violations = []
    approvals = len(non_author_approvers(state))
    if approvals < policy.required_approvals:
        violations.append(
            failed_precondition(
                reasons.NOT_APPROVED,
                state.pull_request_id,
                f"merging needs {policy.required_approvals} approval(s) from someone other "
                f"than the author, the pull request has {approvals}",
            )
        )
    blocking = [check for check in state.checks if check.conclusion != SUCCESS]
    for check in blocking[:MAX_REPORTED_CHECKS]:
        violations.append(
            failed_precondition(
                reasons.CHECKS_NOT_PASSING,
                check.check_name,
                f"check {check.check_name} is {conclusion_name(check.conclusion)}, not SUCCESS",
            )
        )
    if len(blocking) > MAX_REPORTED_CHECKS:
        violations.append(
            failed_precondition(
                reasons.CHECKS_NOT_PASSING,
                state.pull_request_id,
                f"and {len(blocking) - MAX_REPORTED_CHECKS} more checks are not SUCCESS",
            )
        )
    if violations:
        return Rejected(tuple(violations))
    return (
        events_pb2.PullRequestMerged(
            merged_by_user=command.merged_by_user,
            commit_message=merge_commit_message(state, command),
        ),
        _status_changed(OPEN, MERGED, command.merged_by_user),
    )


def close(state: PullRequest, command: commands_pb2.ClosePullRequest) -> RuleOutcome:
    """Only while open."""
    rejected = _require_status(state, OPEN, reasons.PULL_REQUEST_NOT_OPEN)
    if rejected is not None:
        return rejected
    return (
        events_pb2.PullRequestClosed(actor=command.actor),
        _status_changed(OPEN, CLOSED, command.actor),
    )


def reopen(state: PullRequest, command: commands_pb2.ReopenPullRequest) -> RuleOutcome:
    """Only while closed."""
    rejected = _require_status(state, CLOSED, reasons.PULL_REQUEST_NOT_CLOSED)
    if rejected is not None:
        return rejected
    return (
        events_pb2.PullRequestReopened(actor=command.actor),
        _status_changed(CLOSED, OPEN, command.actor),
    )


def revert(state: PullRequest, command: commands_pb2.RevertPullRequest) -> RuleOutcome:
    """Only while merged; the pull request becomes REVERTED."""
    rejected = _require_status(state, MERGED, reasons.PULL_REQUEST_NOT_MERGED)
    if rejected is not None:
        return rejected
    return (
        events_pb2.PullRequestReverted(actor=command.actor, reason=command.reason),
        _status_changed(MERGED, REVERTED, command.actor),
    )
