"""Limits (issue 12): every text in UTF-8 bytes, distinct checks and reviewers per pull request,
bounded rejections, and the size bound of the whole snapshot that follows from them."""

from __future__ import annotations

from dataclasses import fields

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from prgate.domain import (
    DEFAULT_POLICY,
    MAX_REJECTION_BYTES,
    Outcome,
    Policy,
    apply,
    max_public_bytes,
    max_snapshot_bytes,
    validate_fields,
)
from prgate.domain.limits import bounded_violations, field_size, varint_size, violation_bytes
from prgate.domain.outcome import failed_precondition
from prgate.domain.rules import MAX_REPORTED_CHECKS
from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2
from tests.unit.domain.domain_builders import (
    AUTHOR,
    FAILURE,
    NOW,
    PR,
    SUCCESS,
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
    run,
    title_cmd,
)

PRECONDITION = outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION
MIB = 1024 * 1024


def reasons(command, policy=DEFAULT_POLICY):
    return [(v.field, v.reason) for v in validate_fields(command, policy)]


# --- the policy -------------------------------------------------------------------------------


def test_the_default_limits():
    policy = Policy()
    assert (policy.max_title_length, policy.max_title_bytes) == (256, 1024)
    assert (policy.max_description_bytes, policy.max_commit_message_bytes) == (65536, 65536)
    assert (policy.max_repository_bytes, policy.max_branch_bytes) == (256, 256)
    assert (policy.max_name_bytes, policy.max_check_name_bytes, policy.max_reason_bytes) == (
        256,
        256,
        4096,
    )
    assert (policy.max_checks, policy.max_reviews) == (256, 100)


@pytest.mark.parametrize("name", [f.name for f in fields(Policy) if f.name.startswith("max_")])
def test_every_limit_must_be_positive(name):
    with pytest.raises(ValueError, match=name):
        Policy(**{name: 0})


def test_a_policy_that_could_never_merge_is_refused():
    with pytest.raises(ValueError, match="max_reviews"):
        Policy(required_approvals=3, max_reviews=2)


# --- texts are bounded in UTF-8 bytes ---------------------------------------------------------

# (field path, the policy's limit, a command with that field set to the value)
TEXTS = [
    ("command.repository", "max_repository_bytes", lambda v: open_cmd(repository=v)),
    ("command.description", "max_description_bytes", lambda v: open_cmd(description=v)),
    ("command.author", "max_name_bytes", lambda v: open_cmd(author=v)),
    ("command.source_branch", "max_branch_bytes", lambda v: open_cmd(source_branch=v)),
    ("command.target_branch", "max_branch_bytes", lambda v: open_cmd(target_branch=v)),
    ("command.changed_by", "max_name_bytes", lambda v: title_cmd("New", changed_by=v)),
    ("command.reviewer", "max_name_bytes", approve_cmd),
    ("command.check_name", "max_check_name_bytes", lambda v: check_cmd(v, SUCCESS)),
    ("command.merged_by_user", "max_name_bytes", lambda v: merge_cmd(user=v)),
    (
        "command.commit_message_override",
        "max_commit_message_bytes",
        lambda v: merge_cmd(override=v),
    ),
    ("command.actor", "max_name_bytes", lambda v: close_cmd(actor=v)),
    ("command.actor", "max_name_bytes", lambda v: reopen_cmd(actor=v)),
    ("command.actor", "max_name_bytes", lambda v: revert_cmd(actor=v)),
    ("command.reason", "max_reason_bytes", lambda v: revert_cmd(reason=v)),
]


def sized(field: str, size: int) -> str:
    """A value of exactly ``size`` UTF-8 bytes that the field's characters allow."""
    if field == "command.repository":
        return "o/" + "r" * (size - 2)
    # Two-byte characters, and an ASCII one when size is odd: bytes, not characters, count.
    return "é" * (size // 2) + "x" * (size % 2)


@pytest.mark.parametrize(("field", "limit", "build"), TEXTS)
@pytest.mark.parametrize("size", [16, 40])
def test_a_text_at_its_limit_in_bytes_is_accepted_and_one_byte_more_refused(
    field, limit, build, size
):
    policy = Policy(**{limit: size})
    assert reasons(build(sized(field, size)), policy) == []
    over = reasons(build(sized(field, size + 1)), policy)
    assert over == [(field, field.removeprefix("command.").upper() + "_TOO_LONG")]


@pytest.mark.parametrize(("field", "limit", "build"), TEXTS)
def test_the_default_byte_limits(field, limit, build):
    size = getattr(Policy(), limit)
    assert reasons(build(sized(field, size))) == []
    assert reasons(build(sized(field, size + 1)))[0][1].endswith("_TOO_LONG")


def test_a_too_long_text_is_described_in_bytes_without_its_value():
    (violation,) = validate_fields(approve_cmd("é" * 200))
    assert violation.reason == "REVIEWER_TOO_LONG"
    assert violation.description == "reviewer is 400 bytes long (UTF-8), at most 256 are allowed"


def test_a_title_is_bounded_in_characters_and_in_bytes():
    policy = Policy(max_title_length=10, max_title_bytes=20)
    assert reasons(open_cmd(title="x" * 10), policy) == []
    assert reasons(open_cmd(title="é" * 10), policy) == []  # 20 bytes
    assert reasons(open_cmd(title="x" * 11), policy) == [("command.title", "TITLE_TOO_LONG")]
    assert reasons(title_cmd("🐛" * 6), policy) == [("command.title", "TITLE_TOO_LONG")]  # 24 B
    default = Policy()
    assert reasons(open_cmd(title="🐛" * 256), default) == []  # 256 characters, 1024 bytes


# --- distinct checks and reviewers --------------------------------------------------------------


def test_a_new_check_name_beyond_the_limit_is_too_many_checks():
    policy = Policy(max_checks=3)
    state = run(open_cmd(), check_cmd("a", SUCCESS), check_cmd("b", FAILURE))
    state, _ = accept(state, check_cmd("c", SUCCESS), policy)
    rejected = reject(state, check_cmd("d", SUCCESS), policy)
    assert reasons_of(rejected) == [(PRECONDITION, "TOO_MANY_CHECKS", "", "d")]
    assert rejected.violations[0].description == (
        f"pull request {PR} has 3 checks, at most 3 distinct check names are allowed"
    )
    # A check already recorded can still be reported, and it unblocks the merge.
    state, _ = accept(state, check_cmd("b", SUCCESS), policy)
    assert [c.conclusion for c in state.checks] == [SUCCESS] * 3


def test_a_new_reviewer_beyond_the_limit_is_too_many_reviews():
    policy = Policy(max_reviews=2)
    state = run(open_cmd(), approve_cmd("bob"), approve_cmd("carol"))
    rejected = reject(state, approve_cmd("dave"), policy)
    assert reasons_of(rejected) == [(PRECONDITION, "TOO_MANY_REVIEWS", "", "dave")]
    # A repeated approval is still a no-op, and the author is still told SELF_APPROVAL.
    assert accept(state, approve_cmd("bob"), policy)[1] == ()
    assert reasons_of(reject(state, approve_cmd(AUTHOR), policy))[0][1] == "SELF_APPROVAL"


def test_a_merge_names_a_bounded_number_of_blocking_checks_and_counts_the_rest():
    commands = [open_cmd()] + [check_cmd(f"check-{i:02d}", FAILURE) for i in range(25)]
    rejected = reject(run(*commands), merge_cmd())
    assert len(rejected.violations) == 1 + MAX_REPORTED_CHECKS + 1
    assert rejected.reasons[0] == "NOT_APPROVED"
    named = [v.subject for v in rejected.violations[1:-1]]
    assert named == [f"check-{i:02d}" for i in range(MAX_REPORTED_CHECKS)]
    last = rejected.violations[-1]
    assert (last.reason, last.subject) == ("CHECKS_NOT_PASSING", PR)
    assert last.description == f"and {25 - MAX_REPORTED_CHECKS} more checks are not SUCCESS"


def test_the_4300_check_names_of_the_issue_stop_at_the_limit():
    # The case of issue 12: distinct check names of ~250 characters, one after another.
    policy = Policy()
    state = opened()
    refused = 0
    for i in range(4300):
        decision = apply(state, check_cmd(f"{i:05d}-" + "c" * 244, SUCCESS), now=NOW)
        if decision.outcome is Outcome.REJECTED:
            assert decision.result.violations[0].reason == "TOO_MANY_CHECKS"
            refused += 1
        if decision.state is not None:
            state = decision.state
    assert len(state.checks) == policy.max_checks
    assert refused == 4300 - policy.max_checks
    assert state.ByteSize() <= max_snapshot_bytes(policy)


# --- bounded rejections -------------------------------------------------------------------------


def test_bounded_violations_clip_long_subjects_and_descriptions():
    (clipped,) = bounded_violations([failed_precondition("R", "s" * 5000, "é" * 5000)])
    assert len(clipped.subject.encode()) == 256
    assert len(clipped.description.encode()) == 512  # never half a character


def test_bounded_violations_keep_the_leading_ones_that_fit():
    many = [failed_precondition("R", f"s{i}" + "x" * 250, "d" * 500) for i in range(20)]
    kept = bounded_violations(many)
    assert 1 <= len(kept) < 20
    assert [v.subject for v in kept] == [v.subject for v in many[: len(kept)]]
    assert violation_bytes(kept) <= MAX_REJECTION_BYTES
    assert violation_bytes(many[: len(kept) + 1]) > MAX_REJECTION_BYTES


def test_the_default_policy_never_cuts_what_a_rule_reports():
    # The largest rejection the rules make: NOT_APPROVED and the blocking checks, with the
    # longest check names and pull request id the defaults allow.
    policy = Policy()
    pr = "p" * 128
    commands = [open_cmd(pr=pr)]
    commands += [check_cmd(f"{i:03d}" + "c" * 253, FAILURE, pr=pr) for i in range(40)]
    rejected = reject(run(*commands), merge_cmd(pr=pr), policy)
    assert len(rejected.violations) == 1 + MAX_REPORTED_CHECKS + 1
    assert violation_bytes(rejected.violations) <= MAX_REJECTION_BYTES


def test_an_invalid_command_id_is_not_remembered():
    state = apply(None, open_cmd(command_id="c-open"), now=NOW).state
    assert state is not None
    applied = apply(state, approve_cmd("bob", command_id="x" * 10_000), now=NOW)
    assert applied.outcome is Outcome.REJECTED
    assert applied.result.violations[0].reason == "COMMAND_ID_TOO_LONG"
    assert applied.state is None  # nothing written, nothing remembered


# --- the bound of the whole snapshot -------------------------------------------------------------


def test_varint_and_field_sizes_match_protobuf():
    for length in (1, 127, 128, 16383, 16384, 70_000):
        message = pull_request_pb2.PullRequest(title="x" * length)
        assert message.ByteSize() == field_size(length, 3)
    assert [varint_size(v) for v in (0, 127, 128, 2**63 - 1, -1)] == [1, 1, 2, 9, 10]


def test_the_default_bound_is_well_below_one_mebibyte():
    policy = Policy()
    assert max_public_bytes(policy) < max_snapshot_bytes(policy) < 0.55 * MIB


def test_larger_limits_raise_the_bound():
    assert max_snapshot_bytes(Policy(max_checks=4300)) > MIB  # the issue's pull request
    assert max_snapshot_bytes(Policy(recent_commands_kept=0)) == max_public_bytes(Policy())


def largest_pull_request(policy: Policy) -> pull_request_pb2.PullRequest:
    """Every field at its limit: texts of the most bytes, the most reviews and checks, the
    largest timestamps and versions, and recent_commands full of the largest rejection the
    rules make (NOT_APPROVED and blocking checks with the longest names)."""
    big_time = Timestamp(seconds=253402300799, nanos=999_999_999)  # 9999-12-31T23:59:59.999…
    pr = "p" * 128

    def text(size: int) -> str:
        return "🐛" * (size // 4) + "x" * (size % 4)

    state = pull_request_pb2.PullRequest(
        pull_request_id=pr,
        repository="o/" + "r" * (policy.max_repository_bytes - 2),
        title="🐛" * min(policy.max_title_length, policy.max_title_bytes // 4),
        description=text(policy.max_description_bytes),
        author=text(policy.max_name_bytes),
        source_branch=text(policy.max_branch_bytes),
        target_branch=text(policy.max_branch_bytes)[:-1] + "y",
        status=pull_request_pb2.PULL_REQUEST_STATUS_REVERTED,
        version=2**63 - 1,
        created_at=big_time,
        updated_at=big_time,
        closed_at=big_time,
    )
    for i in range(policy.max_reviews):
        state.reviews.add(
            reviewer=f"{i:04d}" + text(policy.max_name_bytes - 4), approved_at=big_time
        )
    for i in range(policy.max_checks):
        name = f"{i:04d}" + "c" * (policy.max_check_name_bytes - 4)
        state.checks.add(check_name=name, conclusion=FAILURE, recorded_at=big_time)
    state.merge.merged_by_user = text(policy.max_name_bytes)
    state.merge.commit_message = text(policy.max_commit_message_bytes)
    state.merge.merged_at.CopyFrom(big_time)
    state.revert.reverted_by = text(policy.max_name_bytes)
    state.revert.reason = text(policy.max_reason_bytes)
    state.revert.reverted_at.CopyFrom(big_time)
    open_state = pull_request_pb2.PullRequest()
    open_state.CopyFrom(state)
    open_state.status = pull_request_pb2.PULL_REQUEST_STATUS_OPEN
    open_state.version = 7  # far from VERSION_LIMIT_REACHED
    open_state.ClearField("reviews")
    largest = reject(open_state, merge_cmd(pr=pr), policy)
    for i in range(policy.recent_commands_kept):
        state.recent_commands.add(
            command_id=f"{i:04d}" + "c" * 124,
            state=outcome_pb2.COMMAND_STATE_REJECTED,
            version=2**63 - 1,
            first_version=2**63 - 1,
            fingerprint=b"\xff" * 32,
            violations=largest.violations,
        )
    return state


@pytest.mark.parametrize(
    "policy",
    [Policy(), Policy(max_checks=10, max_reviews=3, recent_commands_kept=5, max_title_bytes=64)],
)
def test_the_largest_pull_request_fits_its_bound(policy):
    state = largest_pull_request(policy)
    size = state.ByteSize()
    assert size <= max_snapshot_bytes(policy)
    # The bound is close to what can be built, not a guess from far above.
    assert size >= 0.85 * max_snapshot_bytes(policy)
    public = pull_request_pb2.PullRequest()
    public.CopyFrom(state)
    public.ClearField("recent_commands")
    assert 0.95 * max_public_bytes(policy) <= public.ByteSize() <= max_public_bytes(policy)


# Random command sequences under small limits, through apply() as the processor runs them:
# whatever they do, no snapshot outgrows the bound of its policy.
SMALL = Policy(
    max_title_length=6,
    max_title_bytes=12,
    max_description_bytes=20,
    max_repository_bytes=12,
    max_branch_bytes=8,
    max_name_bytes=8,
    max_check_name_bytes=8,
    max_commit_message_bytes=24,
    max_reason_bytes=16,
    max_checks=3,
    max_reviews=2,
    recent_commands_kept=4,
)
small_texts = st.text(alphabet="ab🐛é\u202e\n", max_size=30)
names = st.sampled_from(["ann", "bob", "cy", "dee", "🐛🐛", "é" * 5, "x" * 9])
PR_IDS = ("pr-a", "pr-b")


@st.composite
def small_commands(draw: st.DrawFn) -> commands_pb2.CommandEnvelope:
    pr = draw(st.sampled_from(PR_IDS))
    kind = draw(st.sampled_from(["open", "title", "approve", "check", "merge", "close", "revert"]))
    if kind == "open":
        return open_cmd(
            pr=pr,
            repository=draw(st.sampled_from(["o/r", "Org/Repo", "o/" + "r" * 11])),
            title=draw(small_texts),
            description=draw(small_texts),
            author=draw(names),
            source_branch=draw(names),
            target_branch="main",
        )
    if kind == "title":
        return title_cmd(draw(small_texts), changed_by=draw(names), pr=pr)
    if kind == "approve":
        return approve_cmd(draw(names), pr=pr)
    if kind == "check":
        return check_cmd(draw(names), draw(st.sampled_from([SUCCESS, FAILURE])), pr=pr)
    if kind == "merge":
        return merge_cmd(user=draw(names), override=draw(small_texts), pr=pr)
    if kind == "close":
        return close_cmd(actor=draw(names), pr=pr)
    return revert_cmd(actor=draw(names), reason=draw(small_texts), pr=pr)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(sequence=st.lists(small_commands(), min_size=1, max_size=60))
def test_no_command_sequence_outgrows_the_bound(sequence):
    bound = max_snapshot_bytes(SMALL)
    states: dict[str, pull_request_pb2.PullRequest] = {}
    for index, command in enumerate(sequence):
        command.command_id = f"c-{index}"
        pr = (
            command.pull_request_id
            or getattr(command, command.WhichOneof("command")).pull_request_id
        )
        applied = apply(states.get(pr), command, now=NOW, policy=SMALL)
        if applied.state is not None:
            states[pr] = applied.state
            assert applied.state.ByteSize() <= bound
            assert len(applied.state.checks) <= SMALL.max_checks
            assert len(applied.state.reviews) <= SMALL.max_reviews
