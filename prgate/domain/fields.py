"""Field rules: what a well-formed command looks like, before any state is consulted.

Every text that enters the system is bounded, in UTF-8 bytes (the limits are the
:class:`Policy`'s), and holds only the characters its kind allows (:mod:`prgate.domain.text`:
no control or format characters, so no bidirectional controls). Field paths in violations are
relative to the RPC request (``command.title``); the envelope fields the gateway fills in
itself (``command_id``, ``pull_request_id``) are reported under their envelope names, and
``expected_version`` under ``options.expected_version``, where the RPC request carries it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from google.protobuf.message import Message

from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2

from . import reasons
from .commands import OPEN
from .outcome import invalid_argument
from .policy import DEFAULT_POLICY, Policy
from .text import TextKind, bad_character, utf8_size

MAX_ID_LENGTH = 128

ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")
# GitHub's owner/name: ASCII letters, digits, '.', '_' and '-'; compared case-insensitively.
REPOSITORY_PATTERN = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+")

VALID_CONCLUSIONS = frozenset(
    {
        pull_request_pb2.CHECK_CONCLUSION_SUCCESS,
        pull_request_pb2.CHECK_CONCLUSION_FAILURE,
        pull_request_pb2.CHECK_CONCLUSION_PENDING,
    }
)

Violations = list[outcome_pb2.Violation]


def canonical_repository(repository: str) -> str:
    """The form a repository name is stored and compared in: ``owner/name`` in lower case.

    GitHub treats owner and name case-insensitively, so ``ACME/Widgets`` and ``acme/widgets``
    are one repository. Names are ASCII (:data:`REPOSITORY_PATTERN`), so lower-casing is the
    whole normalization; snapshots written before it are matched the same way.
    """
    return repository.lower()


@dataclass(frozen=True)
class TextRule:
    """The limits of one text field."""

    required: bool = True
    # At most this many UTF-8 bytes.
    max_bytes: int = 256
    # And, when set, at most this many characters (code points).
    max_length: int | None = None
    kind: TextKind = TextKind.NAME
    pattern: re.Pattern[str] | None = None
    pattern_hint: str = ""


ID_RULE = TextRule(max_bytes=MAX_ID_LENGTH, pattern=ID_PATTERN, pattern_hint="A-Z a-z 0-9 . _ : -")
# Envelope ids the gateway may not have filled in yet: empty is fine, anything else must be valid.
OPTIONAL_ID_RULE = TextRule(
    required=False, max_bytes=MAX_ID_LENGTH, pattern=ID_PATTERN, pattern_hint="A-Z a-z 0-9 . _ : -"
)


@dataclass(frozen=True)
class Rules:
    """The text rules of one policy (built once per policy)."""

    repository: TextRule
    title: TextRule
    description: TextRule
    branch: TextRule
    name: TextRule
    check_name: TextRule
    commit_message: TextRule
    reason: TextRule


@cache
def rules_of(policy: Policy) -> Rules:
    """The text rules ``policy`` sets."""
    multi_line = TextKind.MULTI_LINE
    return Rules(
        repository=TextRule(
            max_bytes=policy.max_repository_bytes,
            pattern=REPOSITORY_PATTERN,
            pattern_hint="owner/name",
        ),
        title=TextRule(
            max_bytes=policy.max_title_bytes,
            max_length=policy.max_title_length,
            kind=TextKind.ONE_LINE,
        ),
        description=TextRule(
            required=False, max_bytes=policy.max_description_bytes, kind=multi_line
        ),
        branch=TextRule(max_bytes=policy.max_branch_bytes),
        name=TextRule(max_bytes=policy.max_name_bytes),
        check_name=TextRule(max_bytes=policy.max_check_name_bytes),
        commit_message=TextRule(
            required=False, max_bytes=policy.max_commit_message_bytes, kind=multi_line
        ),
        reason=TextRule(required=False, max_bytes=policy.max_reason_bytes, kind=multi_line),
    )


def check_text(value: str, rule: TextRule, name: str, path: str) -> outcome_pb2.Violation | None:
    """The first problem of one text field (``name`` is its proto name), or None.

    The checks run in a fixed order (required, length, then format or characters), so one
    field yields at most one violation. Descriptions name the limit and the first refused
    character, never the value itself.
    """
    prefix = name.upper()
    if not value.strip():
        if rule.required:
            return invalid_argument(f"{prefix}_{reasons.REQUIRED}", path, f"{name} is required")
        if not value or rule.pattern is None:
            return None
        # An optional id of only whitespace is not absent: the format check refuses it.
    too_long = _too_long(value, rule, name)
    if too_long:
        return invalid_argument(f"{prefix}_{reasons.TOO_LONG}", path, too_long)
    if rule.pattern is not None:
        # The pattern admits no control characters, so it is the only character check.
        if rule.pattern.fullmatch(value):
            return None
        return invalid_argument(
            f"{prefix}_{reasons.INVALID}", path, f"{name} must have the form {rule.pattern_hint}"
        )
    bad = bad_character(value, rule.kind)
    if bad is None:
        return None
    if bad.problem.value == reasons.FORMAT_CHARACTERS:
        what = "format characters (bidirectional controls or invisible characters)"
    elif rule.kind is TextKind.MULTI_LINE:
        what = "control characters"
    else:
        what = "control characters or line breaks"
    return invalid_argument(
        f"{prefix}_{bad.problem.value}", path, f"{name} must not contain {what}: {bad.describe()}"
    )


def _too_long(value: str, rule: TextRule, name: str) -> str:
    """Why ``value`` is too long for ``rule``, or "" (a cheap check first: a str of n code
    points has n to 4n UTF-8 bytes)."""
    if rule.max_length is not None and len(value) > rule.max_length:
        return f"{name} is {len(value)} characters long, at most {rule.max_length} are allowed"
    if 4 * len(value) > rule.max_bytes:
        size = utf8_size(value)
        if size > rule.max_bytes:
            return f"{name} is {size} bytes long (UTF-8), at most {rule.max_bytes} are allowed"
    return ""


def _texts(message: Message, rules: dict[str, TextRule], out: Violations) -> None:
    for name, rule in rules.items():
        violation = check_text(getattr(message, name), rule, name, f"command.{name}")
        if violation is not None:
            out.append(violation)


def _open(command: commands_pb2.OpenPullRequest, policy: Policy, out: Violations) -> None:
    rules = rules_of(policy)
    _texts(
        command,
        {
            "repository": rules.repository,
            "title": rules.title,
            "description": rules.description,
            "author": rules.name,
        },
        out,
    )
    branches: Violations = []
    _texts(command, {"source_branch": rules.branch, "target_branch": rules.branch}, branches)
    out.extend(branches)
    if not branches and command.source_branch == command.target_branch:
        out.append(
            invalid_argument(
                reasons.SOURCE_EQUALS_TARGET_BRANCH,
                "command.target_branch",
                "source and target branch must differ",
            )
        )


def _change_title(
    command: commands_pb2.ChangePullRequestTitle, policy: Policy, out: Violations
) -> None:
    rules = rules_of(policy)
    _texts(
        command,
        {"pull_request_id": ID_RULE, "title": rules.title, "changed_by": rules.name},
        out,
    )


def _approve(command: commands_pb2.ApprovePullRequest, policy: Policy, out: Violations) -> None:
    _texts(command, {"pull_request_id": ID_RULE, "reviewer": rules_of(policy).name}, out)


def _record_check(command: commands_pb2.RecordCheckResult, policy: Policy, out: Violations) -> None:
    _texts(command, {"pull_request_id": ID_RULE, "check_name": rules_of(policy).check_name}, out)
    if command.conclusion not in VALID_CONCLUSIONS:
        out.append(
            invalid_argument(
                reasons.CONCLUSION_INVALID,
                "command.conclusion",
                f"conclusion must be SUCCESS, FAILURE or PENDING, not {command.conclusion}",
            )
        )


def _merge(command: commands_pb2.MergePullRequest, policy: Policy, out: Violations) -> None:
    rules = rules_of(policy)
    _texts(
        command,
        {
            "pull_request_id": ID_RULE,
            "merged_by_user": rules.name,
            "commit_message_override": rules.commit_message,
        },
        out,
    )


def _actor_only(
    command: commands_pb2.ClosePullRequest | commands_pb2.ReopenPullRequest,
    policy: Policy,
    out: Violations,
) -> None:
    _texts(command, {"pull_request_id": ID_RULE, "actor": rules_of(policy).name}, out)


def _revert(command: commands_pb2.RevertPullRequest, policy: Policy, out: Violations) -> None:
    rules = rules_of(policy)
    _texts(command, {"pull_request_id": ID_RULE, "actor": rules.name, "reason": rules.reason}, out)


# Keyed by CommandEnvelope oneof field name; each appends its violations to ``out``.
_VALIDATORS: dict[str, Callable[..., None]] = {
    OPEN: _open,
    "change_pull_request_title": _change_title,
    "approve_pull_request": _approve,
    "record_check_result": _record_check,
    "merge_pull_request": _merge,
    "close_pull_request": _actor_only,
    "reopen_pull_request": _actor_only,
    "revert_pull_request": _revert,
}


def _envelope(command: commands_pb2.CommandEnvelope, which: str | None, out: Violations) -> None:
    # Filled in by the gateway, so optional here: the gateway may validate before assigning ids.
    if command.command_id:
        violation = check_text(command.command_id, OPTIONAL_ID_RULE, "command_id", "command_id")
        if violation is not None:
            out.append(violation)
    if command.pull_request_id:
        if which is None or which == OPEN:
            violation = check_text(
                command.pull_request_id, OPTIONAL_ID_RULE, "pull_request_id", "pull_request_id"
            )
            if violation is not None:
                out.append(violation)
        else:
            # The gateway copies the command's id here; the command's own check covers its
            # format, so only a disagreement is reported (once, on the envelope).
            own = getattr(command, which).pull_request_id
            if own and own != command.pull_request_id:
                out.append(
                    invalid_argument(
                        reasons.PULL_REQUEST_ID_MISMATCH,
                        "pull_request_id",
                        "the envelope's pull_request_id differs from the command's",
                    )
                )
    if command.HasField("expected_version") and command.expected_version < 0:
        out.append(
            invalid_argument(
                reasons.EXPECTED_VERSION_INVALID,
                "options.expected_version",
                "expected_version must not be negative",
            )
        )


def validate_fields(
    command: commands_pb2.CommandEnvelope, policy: Policy = DEFAULT_POLICY
) -> tuple[outcome_pb2.Violation, ...]:
    """Every INVALID_ARGUMENT violation of the command, without looking at any state.

    Reports all malformed fields at once (at most one violation per field). An empty envelope
    ``command_id`` or ``pull_request_id`` is allowed here; :func:`decide` needs the latter for
    OpenPullRequest.
    """
    out: Violations = []
    which = command.WhichOneof("command")
    _envelope(command, which, out)
    if which is None:
        out.append(
            invalid_argument(reasons.COMMAND_MISSING, "command", "the request has no command")
        )
    else:
        _VALIDATORS[which](getattr(command, which), policy, out)
    return tuple(out)
