"""Outgoing records of the processor (events, snapshots, results, dead letters) and headers.

Every value is protobuf binary and every record carries the fixed ``message-type`` header;
records caused by a command also carry its ``correlation-id`` (and ``traceparent`` when the
command had one), so one command can be followed across all topics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Message

from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.outcome_pb2 import (
    COMMAND_STATE_FAILED,
    CommandState,
    ProcessedCommand,
    Violation,
)
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from processor.contract import (
    HEADER_CORRELATION_ID,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_SOURCE,
    HEADER_MESSAGE_TYPE,
    HEADER_TRACEPARENT,
    TYPE_COMMAND_RESULT,
    TYPE_EVENT_ENVELOPE,
    TYPE_PULL_REQUEST,
)

Headers = list[tuple[str, str | bytes | None]]
# What confluent-kafka hands back: a list of pairs (consumed records) or a dict.
RawHeaders = Mapping[str, str | bytes | None] | Sequence[tuple[str, str | bytes | None]] | None

# Longest dlq-error header kept: the error text of a parse failure is short, a traceback is not.
_MAX_ERROR_BYTES = 2000


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to produce inside the current transaction."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


def _pairs(headers: RawHeaders) -> Iterable[tuple[str, str | bytes | None]]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def header(headers: RawHeaders, name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found: str | None = None
    for key, value in _pairs(headers):
        if key == name and value is not None:
            found = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return found


def trace_headers(correlation_id: str, traceparent: str | None, message_type: str) -> Headers:
    """The fixed headers of a record caused by one command."""
    out: Headers = [
        (HEADER_MESSAGE_TYPE, message_type.encode()),
        (HEADER_CORRELATION_ID, correlation_id.encode()),
    ]
    if traceparent:
        out.append((HEADER_TRACEPARENT, traceparent.encode()))
    return out


def event_record(topic: str, event: EventEnvelope, traceparent: str | None) -> Outgoing:
    """An event on the events topic, keyed by pull request id."""
    return Outgoing(
        topic,
        event.pull_request_id.encode(),
        event.SerializeToString(),
        trace_headers(event.command_id, traceparent, TYPE_EVENT_ENVELOPE),
    )


def snapshot_record(
    topic: str, state: PullRequest, command_id: str, traceparent: str | None
) -> Outgoing:
    """The whole pull request on the compacted topic, keyed by pull request id."""
    return Outgoing(
        topic,
        state.pull_request_id.encode(),
        state.SerializeToString(),
        trace_headers(command_id, traceparent, TYPE_PULL_REQUEST),
    )


def result_record(
    topic: str, result: CommandResult, correlation_id: str, traceparent: str | None
) -> Outgoing:
    """A CommandResult on the reply-to topic, keyed by command id, correlation-id echoed."""
    return Outgoing(
        topic,
        result.command_id.encode(),
        result.SerializeToString(),
        trace_headers(correlation_id, traceparent, TYPE_COMMAND_RESULT),
    )


def make_result(
    *,
    command_id: str,
    pull_request_id: str,
    command_type: str,
    state: CommandState,
    version: int,
    completed_at: datetime,
    events: Sequence[EventEnvelope] = (),
    violations: Sequence[Violation] = (),
    error_message: str = "",
    duplicate: bool = False,
) -> CommandResult:
    """A CommandResult with ``completed_at`` set."""
    result = CommandResult(
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


def replayed_result(
    processed: ProcessedCommand, pull_request_id: str, command_type: str, completed_at: datetime
) -> CommandResult:
    """The original answer to a command id handled before: no events, ``duplicate=True``."""
    return make_result(
        command_id=processed.command_id,
        pull_request_id=pull_request_id,
        command_type=command_type,
        state=processed.state,
        version=processed.version,
        violations=list(processed.violations),
        completed_at=completed_at,
        duplicate=True,
    )


def failed_result(
    command_id: str, pull_request_id: str, command_type: str, error: str, completed_at: datetime
) -> CommandResult:
    """FAILED: the command could not be processed at all (it went to the DLQ)."""
    return make_result(
        command_id=command_id,
        pull_request_id=pull_request_id,
        command_type=command_type,
        state=COMMAND_STATE_FAILED,
        version=0,
        error_message=error,
        completed_at=completed_at,
    )


def dead_letter_record(topic: str, message: Message, error: str) -> Outgoing:
    """The consumed record as received (key, value, headers) plus ``dlq-error``/``dlq-source``."""
    headers: Headers = []
    for key, value in _pairs(message.headers()):
        headers.append((key, value.encode() if isinstance(value, str) else value))
    source = f"{message.topic()}/{message.partition()}/{message.offset()}"
    headers.append((HEADER_DLQ_ERROR, error.encode("utf-8", errors="replace")[:_MAX_ERROR_BYTES]))
    headers.append((HEADER_DLQ_SOURCE, source.encode()))
    return Outgoing(topic, message.key(), message.value(), headers)
