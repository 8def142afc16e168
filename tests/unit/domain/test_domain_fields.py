"""Field rules (INVALID_ARGUMENT): every field of every command, accepted and rejected."""

from __future__ import annotations

import pytest

from prgate.domain import DEFAULT_POLICY, Policy, Rejected, decide, reasons, validate_fields
from prgate.v1 import commands_pb2, outcome_pb2
from tests.unit.domain.domain_builders import (
    NOW,
    approve_cmd,
    check_cmd,
    close_cmd,
    envelope,
    merge_cmd,
    open_cmd,
    reopen_cmd,
    revert_cmd,
    title_cmd,
)

INVALID_ARGUMENT = outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT


def fields_and_reasons(command: commands_pb2.CommandEnvelope, policy: Policy = DEFAULT_POLICY):
    violations = validate_fields(command, policy)
    assert all(v.kind == INVALID_ARGUMENT for v in violations)
    assert all(v.description for v in violations)
    assert all(v.reason in reasons.FIELD_REASONS for v in violations)
    return [(v.field, v.reason) for v in violations]


def test_a_well_formed_open_has_no_violations():
    assert validate_fields(open_cmd()) == ()


def test_a_missing_command_is_reported_on_field_command():
    assert fields_and_reasons(commands_pb2.CommandEnvelope(command_id="c1")) == [
        ("command", "COMMAND_MISSING")
    ]


def test_every_malformed_field_is_reported_at_once():
    command = open_cmd(
        repository="", title="", description="", author="", source_branch="", target_branch=""
    )
    assert fields_and_reasons(command) == [
        ("command.repository", "REPOSITORY_REQUIRED"),
        ("command.title", "TITLE_REQUIRED"),
        ("command.author", "AUTHOR_REQUIRED"),
        ("command.source_branch", "SOURCE_BRANCH_REQUIRED"),
        ("command.target_branch", "TARGET_BRANCH_REQUIRED"),
    ]


def test_decide_reports_the_same_field_violations():
    command = open_cmd(title="x" * 300, author=" ")
    decision = decide(None, command, now=NOW)
    assert isinstance(decision, Rejected)
    assert decision.violations == validate_fields(command)
    assert decision.reasons == ("TITLE_TOO_LONG", "AUTHOR_REQUIRED")
    assert decision.kind == INVALID_ARGUMENT


@pytest.mark.parametrize("repository", ["octo/widgets", "a/b", "Org-1/repo.name_2"])
def test_repository_owner_slash_name_is_accepted(repository):
    assert fields_and_reasons(open_cmd(repository=repository)) == []


@pytest.mark.parametrize(
    ("repository", "reason"),
    [
        ("widgets", "REPOSITORY_INVALID"),
        ("a/b/c", "REPOSITORY_INVALID"),
        ("/b", "REPOSITORY_INVALID"),
        ("a/", "REPOSITORY_INVALID"),
        ("a b/c", "REPOSITORY_INVALID"),
        ("a/\nb", "REPOSITORY_INVALID"),
        ("   ", "REPOSITORY_REQUIRED"),
        ("o/" + "r" * 255, "REPOSITORY_TOO_LONG"),
    ],
)
def test_a_malformed_repository_is_rejected(repository, reason):
    assert fields_and_reasons(open_cmd(repository=repository)) == [("command.repository", reason)]


@pytest.mark.parametrize("title", ["x", "x" * 256, "é" * 256, "Fix: 🐛 in the parser"])
def test_titles_up_to_256_characters_are_accepted(title):
    assert fields_and_reasons(open_cmd(title=title)) == []
    assert fields_and_reasons(title_cmd(title)) == []


@pytest.mark.parametrize(
    ("title", "reason"),
    [
        ("x" * 257, "TITLE_TOO_LONG"),
        ("", "TITLE_REQUIRED"),
        (" \t ", "TITLE_REQUIRED"),
        ("two\nlines", "TITLE_CONTROL_CHARACTERS"),
        ("tab\there", "TITLE_CONTROL_CHARACTERS"),
        ("nul\x00", "TITLE_CONTROL_CHARACTERS"),
        ("bell\x07", "TITLE_CONTROL_CHARACTERS"),
        ("c1\x85", "TITLE_CONTROL_CHARACTERS"),
        ("line\u2028sep", "TITLE_CONTROL_CHARACTERS"),
    ],
)
def test_a_malformed_title_is_rejected_on_open_and_retitle(title, reason):
    assert fields_and_reasons(open_cmd(title=title)) == [("command.title", reason)]
    assert fields_and_reasons(title_cmd(title)) == [("command.title", reason)]


def test_the_title_limit_comes_from_the_policy():
    policy = Policy(max_title_length=10)
    assert fields_and_reasons(open_cmd(title="x" * 10), policy) == []
    assert fields_and_reasons(open_cmd(title="x" * 11), policy) == [
        ("command.title", "TITLE_TOO_LONG")
    ]
    assert fields_and_reasons(title_cmd("x" * 11), policy) == [("command.title", "TITLE_TOO_LONG")]


def test_a_huge_value_is_rejected_without_echoing_it():
    (violation,) = validate_fields(open_cmd(title="x" * 10_000_000))
    assert violation.reason == "TITLE_TOO_LONG"
    assert violation.description == "title is 10000000 characters long, at most 256 are allowed"


@pytest.mark.parametrize(
    "description", ["", "x" * 65536, "é" * 32768, "line one\nline two\r\n\ttabbed"]
)
def test_descriptions_up_to_64_kib_of_multi_line_text_are_accepted(description):
    assert fields_and_reasons(open_cmd(description=description)) == []


@pytest.mark.parametrize(
    ("description", "reason"),
    [
        ("x" * 65537, "DESCRIPTION_TOO_LONG"),
        ("é" * 32769, "DESCRIPTION_TOO_LONG"),  # 65538 UTF-8 bytes
        ("nul \x00", "DESCRIPTION_CONTROL_CHARACTERS"),
        ("escape \x1b[31m", "DESCRIPTION_CONTROL_CHARACTERS"),
    ],
)
def test_a_malformed_description_is_rejected(description, reason):
    assert fields_and_reasons(open_cmd(description=description)) == [
        ("command.description", reason)
    ]


@pytest.mark.parametrize("field", ["author", "source_branch", "target_branch"])
@pytest.mark.parametrize(
    ("value", "suffix"),
    [("", "REQUIRED"), ("x" * 257, "TOO_LONG"), ("a\nb", "CONTROL_CHARACTERS")],
)
def test_open_names_are_bounded(field, value, suffix):
    command = open_cmd(**{field: value})
    assert (f"command.{field}", f"{field.upper()}_{suffix}") in fields_and_reasons(command)


def test_source_and_target_branch_must_differ():
    assert fields_and_reasons(open_cmd(source_branch="main", target_branch="main")) == [
        ("command.target_branch", "SOURCE_EQUALS_TARGET_BRANCH")
    ]


PR_ID_BUILDERS = [
    lambda pr: title_cmd("New", pr=pr),
    lambda pr: approve_cmd("bob", pr=pr),
    lambda pr: check_cmd("ci", 1, pr=pr),
    lambda pr: merge_cmd(pr=pr),
    lambda pr: close_cmd(pr=pr),
    lambda pr: reopen_cmd(pr=pr),
    lambda pr: revert_cmd(pr=pr),
]


@pytest.mark.parametrize("build", PR_ID_BUILDERS)
@pytest.mark.parametrize(
    "pr", ["p", "a.b_c:d-1", "A" * 128, "0d7c1c7e-5a3b-4b8e-9d0f-1f2e3d4c5b6a"]
)
def test_pull_request_ids_of_up_to_128_safe_characters_are_accepted(build, pr):
    assert fields_and_reasons(build(pr)) == []


@pytest.mark.parametrize("build", PR_ID_BUILDERS)
@pytest.mark.parametrize(
    ("pr", "reason"),
    [
        ("", "PULL_REQUEST_ID_REQUIRED"),
        ("A" * 129, "PULL_REQUEST_ID_TOO_LONG"),
        ("pr 1", "PULL_REQUEST_ID_INVALID"),
        ("pr/1", "PULL_REQUEST_ID_INVALID"),
        ("pr\n1", "PULL_REQUEST_ID_INVALID"),
        ("prü", "PULL_REQUEST_ID_INVALID"),
    ],
)
def test_a_malformed_pull_request_id_is_rejected(build, pr, reason):
    assert fields_and_reasons(build(pr)) == [("command.pull_request_id", reason)]


ACTOR_FIELDS = [
    ("changed_by", lambda v: title_cmd("New", changed_by=v)),
    ("reviewer", approve_cmd),
    ("merged_by_user", lambda v: merge_cmd(user=v)),
    ("actor", lambda v: close_cmd(actor=v)),
    ("actor", lambda v: reopen_cmd(actor=v)),
    ("actor", lambda v: revert_cmd(actor=v)),
]


@pytest.mark.parametrize(("field", "build"), ACTOR_FIELDS)
@pytest.mark.parametrize(
    ("value", "suffix"),
    [
        ("", "REQUIRED"),
        ("  ", "REQUIRED"),
        ("x" * 257, "TOO_LONG"),
        ("a\nb", "CONTROL_CHARACTERS"),
        ("a\x00", "CONTROL_CHARACTERS"),
    ],
)
def test_a_malformed_user_name_is_rejected(field, build, value, suffix):
    assert fields_and_reasons(build(value)) == [(f"command.{field}", f"{field.upper()}_{suffix}")]


@pytest.mark.parametrize(("field", "build"), ACTOR_FIELDS)
def test_user_names_up_to_256_characters_are_accepted(field, build):
    assert fields_and_reasons(build("u" * 256)) == []
    assert fields_and_reasons(build("Zoë O'Brien (bot)")) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "CHECK_NAME_REQUIRED"),
        ("c" * 257, "CHECK_NAME_TOO_LONG"),
        ("a\tb", "CHECK_NAME_CONTROL_CHARACTERS"),
    ],
)
def test_a_malformed_check_name_is_rejected(name, reason):
    assert fields_and_reasons(check_cmd(name, 1)) == [("command.check_name", reason)]


@pytest.mark.parametrize("conclusion", [1, 2, 3])
def test_success_failure_and_pending_are_valid_conclusions(conclusion):
    assert fields_and_reasons(check_cmd("c" * 256, conclusion)) == []


@pytest.mark.parametrize("conclusion", [0, 4, 99, -1, 2**31 - 1])
def test_unspecified_or_unknown_conclusions_are_rejected(conclusion):
    assert fields_and_reasons(check_cmd("ci", conclusion)) == [
        ("command.conclusion", "CONCLUSION_INVALID")
    ]


def test_check_name_and_conclusion_are_reported_together():
    assert fields_and_reasons(check_cmd("", 0)) == [
        ("command.check_name", "CHECK_NAME_REQUIRED"),
        ("command.conclusion", "CONCLUSION_INVALID"),
    ]


@pytest.mark.parametrize("override", ["", "x" * 65536, "Title\n\nBody\twith tab"])
def test_commit_message_overrides_up_to_64_kib_are_accepted(override):
    assert fields_and_reasons(merge_cmd(override=override)) == []


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("x" * 65537, "COMMIT_MESSAGE_OVERRIDE_TOO_LONG"),
        ("bad\x00", "COMMIT_MESSAGE_OVERRIDE_CONTROL_CHARACTERS"),
    ],
)
def test_a_malformed_commit_message_override_is_rejected(override, reason):
    assert fields_and_reasons(merge_cmd(override=override)) == [
        ("command.commit_message_override", reason)
    ]


@pytest.mark.parametrize("reason", ["", "r" * 4096, "broke main\nsee the incident"])
def test_revert_reasons_up_to_4_kib_are_accepted(reason):
    assert fields_and_reasons(revert_cmd(reason=reason)) == []


@pytest.mark.parametrize(
    ("reason", "code"),
    [("r" * 4097, "REASON_TOO_LONG"), ("bad\x7f", "REASON_CONTROL_CHARACTERS")],
)
def test_a_malformed_revert_reason_is_rejected(reason, code):
    assert fields_and_reasons(revert_cmd(reason=reason)) == [("command.reason", code)]


@pytest.mark.parametrize(
    ("command_id", "reason"),
    [
        ("c" * 129, "COMMAND_ID_TOO_LONG"),
        ("bad id", "COMMAND_ID_INVALID"),
        (" ", "COMMAND_ID_INVALID"),
    ],
)
def test_a_malformed_envelope_command_id_is_rejected(command_id, reason):
    assert fields_and_reasons(approve_cmd("bob", command_id=command_id)) == [("command_id", reason)]


def test_envelope_ids_may_be_left_empty_for_the_gateway_to_fill_in():
    assert fields_and_reasons(approve_cmd("bob", command_id="")) == []
    assert fields_and_reasons(open_cmd(pr="")) == []


def test_an_envelope_pull_request_id_must_match_the_command():
    assert fields_and_reasons(approve_cmd("bob", pull_request_id="pr-1")) == []
    assert fields_and_reasons(approve_cmd("bob", pull_request_id="pr-2")) == [
        ("pull_request_id", "PULL_REQUEST_ID_MISMATCH")
    ]
    assert fields_and_reasons(open_cmd(pr="bad id")) == [
        ("pull_request_id", "PULL_REQUEST_ID_INVALID")
    ]
    # The gateway copies the command's id into the envelope: one violation, on the command.
    assert fields_and_reasons(approve_cmd("bob", pr="pr 1", pull_request_id="pr 1")) == [
        ("command.pull_request_id", "PULL_REQUEST_ID_INVALID")
    ]
    # Found by test_decide_never_raises: blank is not empty, so it is not "left to fill in".
    assert fields_and_reasons(open_cmd(pr=" ")) == [("pull_request_id", "PULL_REQUEST_ID_INVALID")]


def test_a_negative_expected_version_is_malformed():
    assert fields_and_reasons(approve_cmd("bob", expected_version=-1)) == [
        ("options.expected_version", "EXPECTED_VERSION_INVALID")
    ]
    assert fields_and_reasons(approve_cmd("bob", expected_version=0)) == []


def test_decide_needs_the_id_of_a_new_pull_request():
    rejected = decide(None, open_cmd(pr=""), now=NOW)
    assert isinstance(rejected, Rejected)
    assert [(v.kind, v.field, v.reason) for v in rejected.violations] == [
        (INVALID_ARGUMENT, "pull_request_id", "PULL_REQUEST_ID_REQUIRED")
    ]


def test_an_unset_command_in_a_built_envelope_is_missing():
    command = envelope("approve_pull_request", commands_pb2.ApprovePullRequest())
    command.ClearField("approve_pull_request")
    assert fields_and_reasons(command) == [("command", "COMMAND_MISSING")]
