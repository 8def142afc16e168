"""apply(): one command against the current state, as the processor applies it. Pure.

:func:`~prgate.domain.decide` says what a command does; ``apply`` adds what is owed to a
command id on top of it, in this order:

1. The id is in ``recent_commands`` with another fingerprint: the id (an idempotency key) came
   again with a different command. REJECTED, ALREADY_EXISTS ``IDEMPOTENCY_KEY_REUSED``; no
   events, nothing written, the first command's record stays.
2. The id is in ``recent_commands``: a redelivery. The original answer (state, version,
   violations) with ``duplicate=True``; no events, nothing written.
3. Otherwise ``decide``: the events are folded into the state, and the command, also a rejected
   or a no-op one, is remembered in the new state so that a redelivery gets the same answer.
   For a pull request that does not exist (a rejection, say) nothing is written; neither for
   a command id that is not a valid id (decide rejects it the same way again, and an
   unbounded id must not grow the snapshot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import partial

from prgate.v1 import events_pb2, outcome_pb2, pull_request_pb2, results_pb2
from prgate.v1.commands_pb2 import CommandEnvelope

from . import reasons
from .commands import command_type_name, fingerprint, pull_request_id_of
from .decide import decide, exists
from .evolve import fold
from .fields import OPTIONAL_ID_RULE, check_text
from .outcome import Accepted, already_exists
from .policy import DEFAULT_POLICY, Policy
from .recent import find_processed, remember


class Outcome(Enum):
    """What became of a command (the values are the processor's outcome labels)."""

    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Applied:
    """What one command did.

    ``result`` is the answer for the reply topic; ``events`` the new events (also in a
    SUCCEEDED result), in version order; ``state`` the pull request to keep and publish as the
    new snapshot (with the command remembered), or None when nothing is written.
    """

    outcome: Outcome
    result: results_pb2.CommandResult
    events: tuple[events_pb2.EventEnvelope, ...] = ()
    state: pull_request_pb2.PullRequest | None = None


class DecideFailed(Exception):
    """``decide`` raised: a bug in the rules, not a verdict on the command. The cause is
    chained; the text reads ``decide failed: <type>: <message>``."""


def command_result(
    *,
    command_id: str,
    pull_request_id: str,
    command_type: str,
    state: outcome_pb2.CommandState,
    version: int,
    completed_at: datetime,
    events: Sequence[events_pb2.EventEnvelope] = (),
    violations: Sequence[outcome_pb2.Violation] = (),
    error_message: str = "",
    duplicate: bool = False,
) -> results_pb2.CommandResult:
    """A CommandResult with ``completed_at`` set (a naive datetime is taken as UTC)."""
    result = results_pb2.CommandResult(
        command_id=command_id,
        pull_request_id=pull_request_id,
        state=state,
        version=version,
        events=events,
        violations=violations,
        error_message=error_message,
        duplicate=duplicate,
        command_type=command_type,
    )
    result.completed_at.FromDatetime(completed_at)
    return result


def failed_result(
    command_id: str, pull_request_id: str, command_type: str, error: str, completed_at: datetime
) -> results_pb2.CommandResult:
    """FAILED, version 0: the command could not be processed at all (``error`` says why)."""
    return command_result(
        command_id=command_id,
        pull_request_id=pull_request_id,
        command_type=command_type,
        state=outcome_pb2.COMMAND_STATE_FAILED,
        version=0,
        error_message=error,
        completed_at=completed_at,
    )


def apply(
    state: pull_request_pb2.PullRequest | None,
    command: CommandEnvelope,
    *,
    now: datetime,
    completed_at: datetime | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> Applied:
    """Apply ``command`` to ``state`` (None: no pull request under that id yet).

    ``now`` is the command's time for ``decide`` (the processor passes the record time, so a
    redone batch writes the same events); ``completed_at`` goes into the result (default
    ``now``). Raises :class:`DecideFailed` when ``decide`` raises; the arguments are not
    modified.
    """
    command_id = command.command_id
    answer = partial(
        command_result,
        command_id=command_id,
        pull_request_id=pull_request_id_of(command),
        command_type=command_type_name(command),
        completed_at=now if completed_at is None else completed_at,
    )
    processed = find_processed(state, command_id)
    digest = fingerprint(command)
    if processed is not None and processed.fingerprint and processed.fingerprint != digest:
        reused = already_exists(
            reasons.IDEMPOTENCY_KEY_REUSED,
            command_id,
            "this command id (idempotency key) was already used for a different command",
        )
        version = state.version if state is not None else 0
        return Applied(
            Outcome.REJECTED,
            answer(
                state=outcome_pb2.COMMAND_STATE_REJECTED,
                version=version,
                violations=[reused],
            ),
        )
    if processed is not None:
        original = answer(
            state=processed.state,
            version=processed.version,
            violations=list(processed.violations),
            duplicate=True,
        )
        return Applied(Outcome.DUPLICATE, original)

    try:
        decision = decide(state, command, now=now, policy=policy)
    except Exception as exc:
        raise DecideFailed(f"decide failed: {type(exc).__name__}: {exc}") from exc

    version_before = state.version if state is not None and exists(state) else 0
    remembered = outcome_pb2.ProcessedCommand(
        command_id=command_id, first_version=version_before, fingerprint=digest
    )
    if isinstance(decision, Accepted):
        events = decision.events
        new_state = fold(events, state) if events else state
        version_after = events[-1].version if events else version_before
        remembered.state = outcome_pb2.COMMAND_STATE_SUCCEEDED
        remembered.version = version_after
        outcome = Outcome.SUCCEEDED
        result = answer(state=remembered.state, version=version_after, events=events)
    else:
        events = ()
        new_state = state
        remembered.state = outcome_pb2.COMMAND_STATE_REJECTED
        remembered.version = version_before
        remembered.violations.extend(decision.violations)
        outcome = Outcome.REJECTED
        result = answer(
            state=remembered.state,
            version=version_before,
            violations=decision.violations,
        )
    valid_id = check_text(command_id, OPTIONAL_ID_RULE, "command_id", "command_id") is None
    if new_state is None or not exists(new_state) or not valid_id:
        return Applied(outcome, result, events)
    return Applied(outcome, result, events, remember(new_state, remembered, policy))
