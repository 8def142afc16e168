"""The result of a decision, and builders for the four kinds of violation."""

from __future__ import annotations

from dataclasses import dataclass

from prgate.v1 import events_pb2, outcome_pb2

Violation = outcome_pb2.Violation


@dataclass(frozen=True)
class Accepted:
    """The command applies. ``events`` may be empty: the command changed nothing."""

    events: tuple[events_pb2.EventEnvelope, ...] = ()


@dataclass(frozen=True)
class Rejected:
    """The command is refused; nothing changes.

    ``violations`` is never empty and, when produced by :func:`prgate.domain.decide`, all
    violations of one rejection share one kind, so it maps onto exactly one gRPC status code.
    """

    violations: tuple[outcome_pb2.Violation, ...]

    def __post_init__(self) -> None:
        if not self.violations:
            raise ValueError("a rejection needs at least one violation")

    @property
    def kind(self) -> outcome_pb2.ViolationKind:
        """The kind of the first violation (all of them, for a rejection made by decide)."""
        return self.violations[0].kind

    @property
    def reasons(self) -> tuple[str, ...]:
        """The machine-readable reasons, in order."""
        return tuple(violation.reason for violation in self.violations)


Decision = Accepted | Rejected


def invalid_argument(reason: str, field: str, description: str) -> Violation:
    """A malformed field; ``field`` is the path relative to the RPC request."""
    return Violation(
        kind=outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
        reason=reason,
        field=field,
        description=description,
    )


def failed_precondition(reason: str, subject: str, description: str) -> Violation:
    """A rule that fails on the current state; ``subject`` is what the rule is about."""
    return Violation(
        kind=outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION,
        reason=reason,
        subject=subject,
        description=description,
    )


def not_found(reason: str, subject: str, description: str) -> Violation:
    """The pull request does not exist."""
    return Violation(
        kind=outcome_pb2.VIOLATION_KIND_NOT_FOUND,
        reason=reason,
        subject=subject,
        description=description,
    )


def version_conflict(reason: str, subject: str, description: str) -> Violation:
    """``expected_version`` does not match the current version."""
    return Violation(
        kind=outcome_pb2.VIOLATION_KIND_VERSION_CONFLICT,
        reason=reason,
        subject=subject,
        description=description,
    )


def already_exists(reason: str, subject: str, description: str) -> Violation:
    """The command id was already used for a different command."""
    return Violation(
        kind=outcome_pb2.VIOLATION_KIND_ALREADY_EXISTS,
        reason=reason,
        subject=subject,
        description=description,
    )
