"""Stable machine-readable violation reasons. Clients match on these: never rename one.

Field violations (kind INVALID_ARGUMENT) are named ``<FIELD>_<PROBLEM>``: the field's proto name
in upper case and one of the suffixes below, e.g. ``TITLE_TOO_LONG`` or ``CHECK_NAME_REQUIRED``.
:data:`FIELD_REASONS` lists every such reason that :func:`validate_fields` can produce.
"""

from __future__ import annotations

# Suffixes of field reasons.
REQUIRED = "REQUIRED"  # empty or only whitespace
TOO_LONG = "TOO_LONG"  # over the limit in UTF-8 bytes (a title also in characters)
CONTROL_CHARACTERS = "CONTROL_CHARACTERS"  # a control character (or a line break in one line)
# A format character (Unicode Cf): a bidirectional control such as U+202E, or an invisible one.
FORMAT_CHARACTERS = "FORMAT_CHARACTERS"
INVALID = "INVALID"  # wrong format (id characters, owner/name) or unknown enum value

# INVALID_ARGUMENT reasons that are not about one text field.
COMMAND_MISSING = "COMMAND_MISSING"
CONCLUSION_INVALID = "CONCLUSION_INVALID"
SOURCE_EQUALS_TARGET_BRANCH = "SOURCE_EQUALS_TARGET_BRANCH"
PULL_REQUEST_ID_MISMATCH = "PULL_REQUEST_ID_MISMATCH"
PULL_REQUEST_ID_REQUIRED = "PULL_REQUEST_ID_REQUIRED"
EXPECTED_VERSION_INVALID = "EXPECTED_VERSION_INVALID"

# NOT_FOUND
PULL_REQUEST_NOT_FOUND = "PULL_REQUEST_NOT_FOUND"

# VERSION_CONFLICT
VERSION_CONFLICT = "VERSION_CONFLICT"

# ALREADY_EXISTS (decided by the processor, not by decide(): the id was used for another command)
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"

# FAILED_PRECONDITION
PULL_REQUEST_ALREADY_EXISTS = "PULL_REQUEST_ALREADY_EXISTS"
PULL_REQUEST_NOT_OPEN = "PULL_REQUEST_NOT_OPEN"
PULL_REQUEST_NOT_CLOSED = "PULL_REQUEST_NOT_CLOSED"
PULL_REQUEST_NOT_MERGED = "PULL_REQUEST_NOT_MERGED"
SELF_APPROVAL = "SELF_APPROVAL"
NOT_APPROVED = "NOT_APPROVED"
CHECKS_NOT_PASSING = "CHECKS_NOT_PASSING"
VERSION_LIMIT_REACHED = "VERSION_LIMIT_REACHED"
TOO_MANY_CHECKS = "TOO_MANY_CHECKS"  # one more distinct check name than Policy.max_checks
TOO_MANY_REVIEWS = "TOO_MANY_REVIEWS"  # one more distinct reviewer than Policy.max_reviews

_CHARACTERS = (CONTROL_CHARACTERS, FORMAT_CHARACTERS)
_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    # field: the suffixes it can produce
    "COMMAND_ID": (TOO_LONG, INVALID),
    "PULL_REQUEST_ID": (REQUIRED, TOO_LONG, INVALID),
    "REPOSITORY": (REQUIRED, TOO_LONG, INVALID),
    "TITLE": (REQUIRED, TOO_LONG, *_CHARACTERS),
    "DESCRIPTION": (TOO_LONG, *_CHARACTERS),
    "AUTHOR": (REQUIRED, TOO_LONG, *_CHARACTERS),
    "SOURCE_BRANCH": (REQUIRED, TOO_LONG, *_CHARACTERS),
    "TARGET_BRANCH": (REQUIRED, TOO_LONG, *_CHARACTERS),
    "CHANGED_BY": (REQUIRED, TOO_LONG, *_CHARACTERS),
    "REVIEWER": (REQUIRED, TOO_LONG, *_CHARACTERS),
    "CHECK_NAME": (REQUIRED, TOO_LONG, *_CHARACTERS),
    "MERGED_BY_USER": (REQUIRED, TOO_LONG, *_CHARACTERS),
    "COMMIT_MESSAGE_OVERRIDE": (TOO_LONG, *_CHARACTERS),
    "ACTOR": (REQUIRED, TOO_LONG, *_CHARACTERS),
    "REASON": (TOO_LONG, *_CHARACTERS),
}

FIELD_REASONS: frozenset[str] = frozenset(
    {f"{field}_{suffix}" for field, suffixes in _TEXT_FIELDS.items() for suffix in suffixes}
    | {
        COMMAND_MISSING,
        CONCLUSION_INVALID,
        SOURCE_EQUALS_TARGET_BRANCH,
        PULL_REQUEST_ID_MISMATCH,
        PULL_REQUEST_ID_REQUIRED,
        EXPECTED_VERSION_INVALID,
    }
)

STATE_REASONS: frozenset[str] = frozenset(
    {
        PULL_REQUEST_NOT_FOUND,
        VERSION_CONFLICT,
        PULL_REQUEST_ALREADY_EXISTS,
        PULL_REQUEST_NOT_OPEN,
        PULL_REQUEST_NOT_CLOSED,
        PULL_REQUEST_NOT_MERGED,
        SELF_APPROVAL,
        NOT_APPROVED,
        CHECKS_NOT_PASSING,
        VERSION_LIMIT_REACHED,
        TOO_MANY_CHECKS,
        TOO_MANY_REVIEWS,
    }
)

ALL_REASONS: frozenset[str] = FIELD_REASONS | STATE_REASONS
