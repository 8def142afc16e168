"""The answer checks of :mod:`tests.faults.verify`: every answer a client was told against the
command's terminal result on the results topic (or its absence).

:func:`check_answers` adds each disagreement to ``Verdict.answer_errors`` as
``"<command id>: told <code/state/reason>, but <what Kafka has>"`` and counts the answers it
could compare in ``Verdict.answers_checked``; answers that say nothing about the outcome
(UNAVAILABLE, a deadline without reason) are not counted. The rules are listed in
:mod:`tests.faults.verify`'s docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prgate.domain import reasons
from prgate.v1.outcome_pb2 import (
    COMMAND_STATE_FAILED,
    COMMAND_STATE_REJECTED,
    CommandState,
)
from prgate.v1.results_pb2 import CommandResult
from tests.faults.ledger import Answer, CommandEntry

if TYPE_CHECKING:
    from tests.faults.verify import Verdict

# ErrorInfo reasons that say "the command is on Kafka, its result is not here yet".
ON_KAFKA_REASONS = frozenset({"RESULT_NOT_IN_TIME"})
# Reasons a refusal may carry for a command the processor REJECTED (decide's).
DOMAIN_REASONS = reasons.ALL_REASONS


def _accepts(answer: Answer) -> bool:
    """The answer said the command is on Kafka (see ``load.Call.accepted``)."""
    if answer.code == "OK":
        return answer.state in ("COMMAND_STATE_ACCEPTED", "COMMAND_STATE_SUCCEEDED")
    return answer.reason in ON_KAFKA_REASONS or answer.reason == "COMMAND_FAILED"


def _told(answer: Answer) -> str:
    parts = [answer.code, answer.state, answer.reason]
    return "/".join(p for p in parts if p)


def check_answers(verdict: Verdict, entry: CommandEntry, found: list[CommandResult]) -> None:
    """Each answer of ``entry`` against the command's first non-duplicate result."""
    command_id = entry.command_id
    result = found[0] if found else None
    accepted_later = [False] * len(entry.answers)
    for index in range(len(entry.answers) - 2, -1, -1):
        after = entry.answers[index + 1]
        accepted_later[index] = accepted_later[index + 1] or _accepts(after)
    for answer, later in zip(entry.answers, accepted_later, strict=True):
        told = _told(answer)
        errors: list[str] = []
        checked = True
        if (
            answer.receipt_command_id
            and answer.receipt_command_id != command_id
            and answer.reason != "IDEMPOTENCY_KEY_REUSED"  # names the command that has the key
        ):
            errors.append(f"the answer names command {answer.receipt_command_id}")
        if answer.code == "OK":
            if answer.state in ("COMMAND_STATE_SUCCEEDED", "COMMAND_STATE_REJECTED"):
                errors += _terminal_receipt(answer, command_id, result)
            elif answer.state == "COMMAND_STATE_ACCEPTED":
                checked = result is not None  # without one it is in ``lost`` already
            else:
                errors.append("an OK answer without a terminal or ACCEPTED state")
        elif answer.reason in ON_KAFKA_REASONS:
            checked = result is not None
        elif answer.reason == "COMMAND_FAILED":
            if result is None or result.state != COMMAND_STATE_FAILED:
                errors.append(f"Kafka has {_result_text(result)}")
        elif answer.reason in DOMAIN_REASONS:
            # The gateway refused before producing (no result), or the processor REJECTED it
            # with this reason. A refusal followed by an accepted retry of the same id was a
            # pre-check; the accepted retry's result is not this answer's.
            if result is not None and not later:
                reasons_found = {v.reason for v in result.violations}
                if result.state != COMMAND_STATE_REJECTED or answer.reason not in reasons_found:
                    errors.append(f"Kafka has {_result_text(result)}")
        else:
            checked = False  # UNAVAILABLE, a bare deadline, ...: nothing said about the outcome
        if errors:
            verdict.answer_errors.append(f"{command_id}: told {told}, but " + "; ".join(errors))
        elif checked:
            verdict.answers_checked += 1


def _terminal_receipt(answer: Answer, command_id: str, result: CommandResult | None) -> list[str]:
    """What is wrong with a SUCCEEDED / REJECTED receipt, given the result on Kafka."""
    if result is None:
        return ["no result on Kafka"]
    errors: list[str] = []
    if CommandState.Name(result.state) != answer.state:
        errors.append(f"Kafka has {_result_text(result)}")
    if answer.receipt_pull_request_id and answer.receipt_pull_request_id != result.pull_request_id:
        errors.append(
            f"receipt names {answer.receipt_pull_request_id}, Kafka {result.pull_request_id}"
        )
    told = answer.result
    if told is None:
        return errors
    if told.command_id != command_id:
        errors.append(f"the receipt carries the result of {told.command_id}")
    if told.state != result.state:
        errors.append(
            f"receipt result {CommandState.Name(told.state)}, Kafka {_result_text(result)}"
        )
    if told.version != result.version:
        errors.append(f"receipt version {told.version}, Kafka version {result.version}")
    if not told.duplicate:
        told_events = [e.event_id for e in told.events]
        kafka_events = [e.event_id for e in result.events]
        if told_events != kafka_events:
            errors.append(f"receipt events {told_events[:5]}, Kafka events {kafka_events[:5]}")
    elif told.events:
        errors.append(f"a duplicate=True answer with {len(told.events)} events")
    return errors


def _result_text(result: CommandResult | None) -> str:
    if result is None:
        return "no result"
    reasons_found = ",".join(v.reason for v in result.violations)
    suffix = f" ({reasons_found})" if reasons_found else ""
    return f"{CommandState.Name(result.state)} v{result.version}{suffix}"
