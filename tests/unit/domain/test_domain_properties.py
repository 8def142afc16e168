"""Property tests over random command sequences (hypothesis).

Sequences mix every command type, valid and invalid, on a few pull requests, by random actors
(the author among them), with random check names and conclusions (unknown numbers included).
Settings are derandomized with a modest number of examples so the suite stays fast and stable.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prgate.domain import (
    ALLOWED_TRANSITIONS,
    Accepted,
    Policy,
    Rejected,
    decide,
    evolve,
    fold,
    non_author_approvers,
    pull_request_id_of,
    reasons,
)
from prgate.v1 import commands_pb2, events_pb2, outcome_pb2, pull_request_pb2
from tests.unit.domain.domain_builders import (
    CLOSED,
    MERGED,
    NOW,
    OPEN,
    REVERTED,
    SUCCESS,
    approve_cmd,
    check_cmd,
    close_cmd,
    merge_cmd,
    open_cmd,
    reopen_cmd,
    revert_cmd,
    title_cmd,
)

SEQUENCES = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PR_IDS = ["pr-1", "pr-2", "pr-3"]  # commands on pr-3 are often NOT_FOUND
ACTORS = ["alice", "bob", "carol", "dave"]
CHECK_NAMES = ["ci", "lint", "e2e"]
STATUSES = {OPEN, MERGED, CLOSED, REVERTED}


def weighted(*choices: tuple[int, object]) -> st.SearchStrategy[object]:
    """One of the values, with the given integer weights (hypothesis' own choice of list
    elements is far from uniform, and the sequences need many approvals and successes)."""
    table = [value for weight, value in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).map(table.__getitem__)


prs = st.sampled_from(PR_IDS)
actors = st.sampled_from(ACTORS)
check_names = st.sampled_from(CHECK_NAMES)
# Mostly SUCCESS; sometimes FAILURE/PENDING, UNSPECIFIED or an unknown number.
conclusions = weighted((12, 1), (3, 2), (3, 3), (1, 0), (1, 7), (1, -1))
titles = weighted((6, "T1"), (6, "T2"), (1, ""), (1, "x" * 257), (1, "a\nb"))
# Mostly unset: a random expected_version nearly always conflicts.
expected_versions = weighted((20, None), (1, -1), (1, 0), (1, 1), (1, 2), (1, 4))
kinds = weighted(
    (2, "open"),
    (3, "title"),
    (8, "approve"),
    (6, "check"),
    (6, "merge"),
    (3, "close"),
    (3, "reopen"),
    (3, "revert"),
)


@st.composite
def commands(
    draw: st.DrawFn, targets: tuple[str, ...] = tuple(PR_IDS)
) -> commands_pb2.CommandEnvelope:
    # Mostly the pull requests the sequence opened; now and then any id (maybe NOT_FOUND).
    pr = draw(st.sampled_from(targets)) if draw(weighted((9, True), (1, False))) else draw(prs)
    ev = draw(expected_versions)
    kind = draw(kinds)
    if kind == "open":
        target = draw(st.sampled_from(["main", "feature/frob"]))
        return open_cmd(
            pr=pr,
            expected_version=ev,
            author=draw(actors),
            title=draw(titles),
            target_branch=target,
        )
    if kind == "title":
        return title_cmd(draw(titles), changed_by=draw(actors), pr=pr, expected_version=ev)
    if kind == "approve":
        return approve_cmd(draw(actors), pr=pr, expected_version=ev)
    if kind == "check":
        return check_cmd(draw(check_names), draw(conclusions), pr=pr, expected_version=ev)
    if kind == "merge":
        override = draw(weighted((3, ""), (1, "Custom message")))
        return merge_cmd(user=draw(actors), override=override, pr=pr, expected_version=ev)
    if kind == "close":
        return close_cmd(actor=draw(actors), pr=pr, expected_version=ev)
    if kind == "reopen":
        return reopen_cmd(actor=draw(actors), pr=pr, expected_version=ev)
    return revert_cmd(actor=draw(actors), pr=pr, expected_version=ev)


@st.composite
def sequences(draw: st.DrawFn) -> list[commands_pb2.CommandEnvelope]:
    """A valid open of one to three pull requests, then random commands on them."""
    opened = draw(st.lists(prs, min_size=1, max_size=len(PR_IDS), unique=True))
    prelude = [open_cmd(pr=pr, author=draw(actors), command_id=f"open-{pr}") for pr in opened]
    rest = draw(st.lists(commands(tuple(opened)), min_size=8, max_size=40))
    for index, command in enumerate(rest):
        command.command_id = f"c-{index}"
    return prelude + rest


policies = st.builds(Policy, required_approvals=st.integers(0, 3))


def check_invariants(state: pull_request_pb2.PullRequest, policy: Policy) -> None:
    """What no sequence of commands may ever reach."""
    reviewers = [review.reviewer for review in state.reviews]
    assert state.author not in reviewers
    assert len(reviewers) == len(set(reviewers))
    names = [check.check_name for check in state.checks]
    assert len(names) == len(set(names))
    assert all(check.conclusion in (1, 2, 3) for check in state.checks)
    assert state.status in STATUSES
    if state.status in (MERGED, REVERTED):
        assert state.HasField("merge")
        assert len(non_author_approvers(state)) >= policy.required_approvals
        assert all(check.conclusion == SUCCESS for check in state.checks)
    else:
        assert not state.HasField("merge")
    assert state.HasField("revert") == (state.status == REVERTED)
    assert state.HasField("closed_at") == (state.status == CLOSED)


def replay(
    sequence: list[commands_pb2.CommandEnvelope], policy: Policy
) -> tuple[dict[str, pull_request_pb2.PullRequest], dict[str, list[events_pb2.EventEnvelope]]]:
    """Run the sequence like a processor would, checking every step."""
    states: dict[str, pull_request_pb2.PullRequest] = {}
    histories: dict[str, list[events_pb2.EventEnvelope]] = defaultdict(list)
    for step, command in enumerate(sequence):
        pr = pull_request_id_of(command)
        before = states.get(pr)
        snapshot = None if before is None else before.SerializeToString(deterministic=True)
        decision = decide(before, command, now=NOW + timedelta(seconds=step), policy=policy)
        if before is not None:
            assert before.SerializeToString(deterministic=True) == snapshot
        if isinstance(decision, Rejected):
            assert decision.violations
            assert len({v.kind for v in decision.violations}) == 1
            assert all(
                v.reason in reasons.ALL_REASONS and v.description for v in decision.violations
            )
            continue
        assert isinstance(decision, Accepted)
        start = (before.version if before is not None else 0) + 1
        assert [e.version for e in decision.events] == list(
            range(start, start + len(decision.events))
        )
        state = before
        for event in decision.events:
            assert event.pull_request_id == pr
            assert event.command_id == command.command_id
            which = event.WhichOneof("event")
            if which == "pull_request_status_changed":
                change = event.pull_request_status_changed
                assert state is not None
                assert change.from_status == state.status
                assert (change.from_status, change.to_status) in ALLOWED_TRANSITIONS
            if which == "pull_request_merged":
                assert state is not None
                assert len(non_author_approvers(state)) >= policy.required_approvals
                assert all(check.conclusion == SUCCESS for check in state.checks)
            state = evolve(state, event)
        if state is not None:
            check_invariants(state, policy)
            states[pr] = state
        histories[pr].extend(decision.events)
    return states, histories


@SEQUENCES
@given(sequence=sequences(), policy=policies)
def test_random_sequences_keep_every_invariant(sequence, policy):
    states, histories = replay(sequence, policy)
    for pr, state in states.items():
        history = histories[pr]
        assert [e.version for e in history] == list(range(1, len(history) + 1))
        assert state.version == len(history)
        assert fold(history) == state
        assert len({e.event_id for e in history}) == len(history)


@SEQUENCES
@given(sequence=sequences(), policy=policies)
def test_replaying_a_sequence_gives_the_same_events(sequence, policy):
    assert replay(sequence, policy) == replay(sequence, policy)


# --- decide never raises, whatever it is given ----------------------------------------------

HUGE = "x" * 2_000_000
texts = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["", " ", "pr-1", "a/b", "main", "\x00", "é" * 300, "x" * 70_000, HUGE]),
)
int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)

any_command = st.one_of(
    st.builds(
        commands_pb2.OpenPullRequest,
        repository=texts,
        title=texts,
        description=texts,
        author=texts,
        source_branch=texts,
        target_branch=texts,
    ),
    st.builds(
        commands_pb2.ChangePullRequestTitle, pull_request_id=texts, title=texts, changed_by=texts
    ),
    st.builds(commands_pb2.ApprovePullRequest, pull_request_id=texts, reviewer=texts),
    st.builds(
        commands_pb2.RecordCheckResult, pull_request_id=texts, check_name=texts, conclusion=int32
    ),
    st.builds(
        commands_pb2.MergePullRequest,
        pull_request_id=texts,
        merged_by_user=texts,
        commit_message_override=texts,
    ),
    st.builds(commands_pb2.ClosePullRequest, pull_request_id=texts, actor=texts),
    st.builds(commands_pb2.ReopenPullRequest, pull_request_id=texts, actor=texts),
    st.builds(commands_pb2.RevertPullRequest, pull_request_id=texts, actor=texts, reason=texts),
    st.none(),
)


@st.composite
def envelopes(draw: st.DrawFn) -> commands_pb2.CommandEnvelope:
    envelope = commands_pb2.CommandEnvelope(
        command_id=draw(texts), pull_request_id=draw(texts), caller=draw(texts)
    )
    expected = draw(st.one_of(st.none(), int64))
    if expected is not None:
        envelope.expected_version = expected
    command = draw(any_command)
    if command is not None:
        field = next(
            f.name
            for f in envelope.DESCRIPTOR.oneofs_by_name["command"].fields
            if f.message_type is command.DESCRIPTOR
        )
        getattr(envelope, field).CopyFrom(command)
    return envelope


any_state = st.one_of(
    st.none(),
    st.builds(
        pull_request_pb2.PullRequest,
        pull_request_id=texts,
        title=texts,
        author=texts,
        status=int32,
        version=int64,
        reviews=st.lists(st.builds(pull_request_pb2.Review, reviewer=texts), max_size=3),
        checks=st.lists(
            st.builds(pull_request_pb2.CheckResult, check_name=texts, conclusion=int32), max_size=3
        ),
    ),
)
moments = st.datetimes(timezones=st.one_of(st.none(), st.just(UTC)))


@FUZZ
@given(state=any_state, command=envelopes(), now=moments, approvals=st.integers(0, 5))
def test_decide_never_raises(state, command, now, approvals):
    decision = decide(state, command, now=now, policy=Policy(required_approvals=approvals))
    if isinstance(decision, Rejected):
        kinds = {v.kind for v in decision.violations}
        assert len(kinds) == 1
        assert kinds <= {
            outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
            outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION,
            outcome_pb2.VIOLATION_KIND_NOT_FOUND,
            outcome_pb2.VIOLATION_KIND_VERSION_CONFLICT,
        }
        for violation in decision.violations:
            assert violation.reason in reasons.ALL_REASONS
            assert len(violation.description) < 1024
            if violation.kind == outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT:
                assert violation.field
    else:
        assert isinstance(decision, Accepted)
        state = fold(decision.events, state)
        assert len(decision.events) <= 2


def test_random_sequences_do_reach_merges_and_reverts():
    """Guards the generators: the invariants above are only worth something if merges happen."""
    seen: set[int] = set()

    @SEQUENCES
    @given(sequence=sequences())
    def collect(sequence):
        states, _ = replay(sequence, Policy())
        seen.update(state.status for state in states.values())

    collect()
    assert seen >= {OPEN, MERGED, CLOSED, REVERTED}
