"""How large a pull request, and what is remembered with it, can grow. Pure.

Every text is bounded by the :class:`Policy` (:mod:`prgate.domain.fields`), every repeated
field by a count (``max_reviews``, ``max_checks``, ``recent_commands_kept``) and every
rejection by :data:`MAX_REJECTION_BYTES`, so the serialized snapshot has an upper bound,
:func:`max_snapshot_bytes`, computed here from the policy field by field. With the default
policy it is about 0.47 MiB: well below the 1 MiB a Kafka record (``max.message.bytes``) and
a gRPC message (``PRGATE_MAX_MESSAGE_BYTES``) take by default. The tests build the worst case
and check it against the bound (tests/unit/domain/test_domain_limits.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from prgate.v1 import outcome_pb2

from .fields import MAX_ID_LENGTH
from .policy import Policy
from .text import clip_utf8, utf8_size

# The violations of one rejection take at most this many bytes serialized (each with its
# field tag and length), so a command remembered in recent_commands stays small.
MAX_REJECTION_BYTES = 4096
# A violation's subject (a name or id) and description are clipped to these many bytes.
MAX_SUBJECT_BYTES = 256
MAX_VIOLATION_DESCRIPTION_BYTES = 512

FINGERPRINT_BYTES = 32  # SHA-256, prgate.domain.fingerprint
_VARINT_MAX = 10  # bytes of any int64 or enum value, negative ones included
_DEFAULT_MERGE_MESSAGE = len("Merge pull request : ")  # plus the id and the title


def varint_size(value: int) -> int:
    """Bytes of ``value`` as a protobuf varint (a negative int64 takes 10)."""
    if value < 0:
        return _VARINT_MAX
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def field_size(length: int, number: int = 1) -> int:
    """Bytes of a length-delimited field (string, bytes, message) of ``length`` bytes."""
    return varint_size(number << 3) + varint_size(length) + length


def _scalar(number: int) -> int:
    """Bytes of an int64 or enum field at its largest."""
    return varint_size(number << 3) + _VARINT_MAX


def _timestamp(number: int) -> int:
    """Bytes of a google.protobuf.Timestamp field at its largest (seconds and nanos)."""
    return field_size(_scalar(1) + _scalar(2), number)


def violation_bytes(violations: Iterable[outcome_pb2.Violation]) -> int:
    """Bytes of ``violations`` as a repeated field."""
    return sum(field_size(violation.ByteSize(), 4) for violation in violations)


def bounded_violations(
    violations: Iterable[outcome_pb2.Violation],
) -> tuple[outcome_pb2.Violation, ...]:
    """``violations`` within :data:`MAX_REJECTION_BYTES`: subjects and descriptions clipped,
    then the leading ones that fit (always the first). With the default policy nothing a rule
    reports is cut; this bounds what a larger policy or an old state could produce."""
    kept: list[outcome_pb2.Violation] = []
    used = 0
    for reported in violations:
        violation = reported
        if (
            utf8_size(reported.subject) > MAX_SUBJECT_BYTES
            or utf8_size(reported.description) > MAX_VIOLATION_DESCRIPTION_BYTES
        ):
            violation = outcome_pb2.Violation()
            violation.CopyFrom(reported)
            violation.subject = clip_utf8(reported.subject, MAX_SUBJECT_BYTES)
            violation.description = clip_utf8(reported.description, MAX_VIOLATION_DESCRIPTION_BYTES)
        size = field_size(violation.ByteSize(), 4)
        if kept and used + size > MAX_REJECTION_BYTES:
            break
        kept.append(violation)
        used += size
    return tuple(kept)


def max_public_bytes(policy: Policy) -> int:
    """The largest serialized PullRequest the policy allows, without ``recent_commands``
    (what GetPullRequest, ListPullRequests and WatchPullRequest send)."""
    name = field_size(policy.max_name_bytes)
    review = field_size(name + _timestamp(2), 9)
    check = field_size(field_size(policy.max_check_name_bytes) + _scalar(2) + _timestamp(3), 10)
    default_message = _DEFAULT_MERGE_MESSAGE + MAX_ID_LENGTH + policy.max_title_bytes
    message = max(policy.max_commit_message_bytes, default_message)
    merge = field_size(name + field_size(message, 2) + _timestamp(3), 11)
    revert = field_size(name + field_size(policy.max_reason_bytes, 2) + _timestamp(3), 12)
    return (
        field_size(MAX_ID_LENGTH, 1)
        + field_size(policy.max_repository_bytes, 2)
        + field_size(policy.max_title_bytes, 3)
        + field_size(policy.max_description_bytes, 4)
        + field_size(policy.max_name_bytes, 5)
        + field_size(policy.max_branch_bytes, 6)
        + field_size(policy.max_branch_bytes, 7)
        + _scalar(8)
        + policy.max_reviews * review
        + policy.max_checks * check
        + merge
        + revert
        + _scalar(13)
        + _timestamp(14)
        + _timestamp(15)
        + _timestamp(16)
    )


def max_processed_command_bytes() -> int:
    """The largest serialized ProcessedCommand (one entry of ``recent_commands``)."""
    return (
        field_size(MAX_ID_LENGTH, 1)
        + _scalar(2)
        + _scalar(3)
        + MAX_REJECTION_BYTES
        + _scalar(5)
        + field_size(FINGERPRINT_BYTES, 6)
    )


def max_snapshot_bytes(policy: Policy) -> int:
    """The largest serialized PullRequest (the snapshot on the compacted topic) the policy
    allows: :func:`max_public_bytes` plus ``recent_commands_kept`` remembered commands."""
    recent = policy.recent_commands_kept * field_size(max_processed_command_bytes(), 20)
    return max_public_bytes(policy) + recent
