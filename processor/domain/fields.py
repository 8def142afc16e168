"""Field rules: what a well-formed command looks like, before any state is consulted.

Every text that enters the system is bounded. Field paths in violations are relative to the RPC
request (``command.title``); the envelope fields the gateway fills in itself (``command_id``,
``pull_request_id``) are reported under their envelope names, and ``expected_version`` under
``options.expected_version``, where the RPC request carries it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2

from . import reasons
from .commands import OPEN
from .outcome import invalid_argument
from .policy import DEFAULT_POLICY, Policy

MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 256
MAX_DESCRIPTION_BYTES = 64 * 1024
MAX_COMMIT_MESSAGE_BYTES = 64 * 1024
MAX_REASON_BYTES = 4 * 1024

ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")
REPOSITORY_PATTERN = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+")
# One-line fields: no C0/C1 control characters (tab and line breaks included), no U+2028/2029.
_SINGLE_LINE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Multi-line texts may hold tabs and line breaks, but no other control characters.
_MULTI_LINE_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

VALID_CONCLUSIONS = frozenset(
    {
        pull_request_pb2.CHECK_CONCLUSION_SUCCESS,
        pull_request_pb2.CHECK_CONCLUSION_FAILURE,
        pull_request_pb2.CHECK_CONCLUSION_PENDING,
    }
)

Violations = list[outcome_pb2.Violation]


@dataclass(frozen=True)
class TextRule:
    """The limits of one text field."""

    required: bool = True
    max_length: int = MAX_NAME_LENGTH
    # Limit counted in UTF-8 bytes rather than characters (long free texts).
    in_bytes: bool = False
    multi_line: bool = False
    pattern: re.Pattern[str] | None = None
    pattern_hint: str = ""


ID_RULE = TextRule(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, pattern_hint="A-Z a-z 0-9 . _ : -")
NAME_RULE = TextRule()
# Envelope ids the gateway may not have filled in yet: empty is fine, anything else must be valid.
OPTIONAL_ID_RULE = TextRule(
    required=False, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, pattern_hint="A-Z a-z 0-9 . _ : -"
)
REPOSITORY_RULE = TextRule(pattern=REPOSITORY_PATTERN, pattern_hint="owner/name")
DESCRIPTION_RULE = TextRule(
    required=False, max_length=MAX_DESCRIPTION_BYTES, in_bytes=True, multi_line=True
)
COMMIT_MESSAGE_RULE = TextRule(
    required=False, max_length=MAX_COMMIT_MESSAGE_BYTES, in_bytes=True, multi_line=True
)
REASON_RULE = TextRule(required=False, max_length=MAX_REASON_BYTES, in_bytes=True, multi_line=True)


def check_text(value: str, rule: TextRule, name: str, path: str) -> outcome_pb2.Violation | None:
    """The first problem of one text field (``name`` is its proto name), or None.

    The checks run in a fixed order (required, length, then format or characters), so one
    field yields at most one violation.
    """
    prefix = name.upper()
    if not value.strip():
        if rule.required:
            return invalid_argument(f"{prefix}_{reasons.REQUIRED}", path, f"{name} is required")
        if not value or rule.pattern is None:
            return None
        # An optional id of only whitespace is not absent: the format check refuses it.
    size = len(value.encode("utf-8", "surrogatepass")) if rule.in_bytes else len(value)
    if size > rule.max_length:
        unit = "bytes" if rule.in_bytes else "characters"
        return invalid_argument(
            f"{prefix}_{reasons.TOO_LONG}",
            path,
            f"{name} is {size} {unit} long, at most {rule.max_length} are allowed",
        )
    if rule.pattern is not None:
        # The pattern admits no control characters, so it is the only character check.
        if rule.pattern.fullmatch(value):
            return None
        return invalid_argument(
            f"{prefix}_{reasons.INVALID}", path, f"{name} must have the form {rule.pattern_hint}"
        )
    forbidden = _MULTI_LINE_FORBIDDEN if rule.multi_line else _SINGLE_LINE_FORBIDDEN
    if forbidden.search(value):
        what = "control characters" if rule.multi_line else "control characters or line breaks"
        return invalid_argument(
            f"{prefix}_{reasons.CONTROL_CHARACTERS}", path, f"{name} must not contain {what}"
        )
    return None


def _texts(message: Message, rules: dict[str, TextRule], out: Violations) -> None:
    for name, rule in rules.items():
        violation = check_text(getattr(message, name), rule, name, f"command.{name}")
        if violation is not None:
            out.append(violation)


def _open(command: commands_pb2.OpenPullRequest, policy: Policy, out: Violations) -> None:
    title = TextRule(max_length=policy.max_title_length)
    _texts(
        command,
        {
            "repository": REPOSITORY_RULE,
            "title": title,
            "description": DESCRIPTION_RULE,
            "author": NAME_RULE,
        },
        out,
    )
    branches: Violations = []
    _texts(command, {"source_branch": NAME_RULE, "target_branch": NAME_RULE}, branches)
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
    title = TextRule(max_length=policy.max_title_length)
    _texts(command, {"pull_request_id": ID_RULE, "title": title, "changed_by": NAME_RULE}, out)


def _approve(command: commands_pb2.ApprovePullRequest, policy: Policy, out: Violations) -> None:
    _texts(command, {"pull_request_id": ID_RULE, "reviewer": NAME_RULE}, out)


def _record_check(command: commands_pb2.RecordCheckResult, policy: Policy, out: Violations) -> None:
    _texts(command, {"pull_request_id": ID_RULE, "check_name": NAME_RULE}, out)
    if command.conclusion not in VALID_CONCLUSIONS:
        out.append(
            invalid_argument(
                reasons.CONCLUSION_INVALID,
                "command.conclusion",
                f"conclusion must be SUCCESS, FAILURE or PENDING, not {command.conclusion}",
            )
        )


def _merge(command: commands_pb2.MergePullRequest, policy: Policy, out: Violations) -> None:
    _texts(
        command,
        {
            "pull_request_id": ID_RULE,
            "merged_by_user": NAME_RULE,
            "commit_message_override": COMMIT_MESSAGE_RULE,
        },
        out,
    )


def _actor_only(
    command: commands_pb2.ClosePullRequest | commands_pb2.ReopenPullRequest,
    policy: Policy,
    out: Violations,
) -> None:
    _texts(command, {"pull_request_id": ID_RULE, "actor": NAME_RULE}, out)


def _revert(command: commands_pb2.RevertPullRequest, policy: Policy, out: Violations) -> None:
    _texts(command, {"pull_request_id": ID_RULE, "actor": NAME_RULE, "reason": REASON_RULE}, out)


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
