"""Consumed records to Arrow rows of the archive tables, through the one record codec.

A record is never dropped: a value the codec refuses is archived with its raw bytes, the
codec's reason in ``decode_error`` and whatever typed columns could still be read (a command
whose key is not its pull request id, or that names a command this version does not know,
keeps its envelope's columns). A value with fields this version does not know decodes as usual
(protobuf keeps them; ``raw`` has them for a later re-decode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa
from google.protobuf.timestamp_pb2 import Timestamp

from archive.schema import COMMANDS, EVENTS, FRAME_NAMES, REFUSALS, RESULTS, TableSpec
from prgate.domain import command_type_name
from prgate.kafka import codec
from prgate.kafka.contract import (
    HEADER_CORRELATION_ID,
    HEADER_MESSAGE_TYPE,
    HEADER_TRACEPARENT,
    TYPE_COMMAND_ENVELOPE,
    TYPE_COMMAND_REFUSAL,
    TYPE_COMMAND_RESULT,
    TYPE_EVENT_ENVELOPE,
    Topics,
)
from prgate.v1 import commands_pb2, events_pb2, outcome_pb2, pull_request_pb2, results_pb2
from prgate.v1.refusals_pb2 import CommandRefusal

MAX_ERROR_CHARS = 2000
Row = dict[str, Any]
# (key, value, headers) -> typed columns; raises codec.Undecodable (``columns`` attribute: what
# could be read anyway).
Columns = Callable[[bytes | None, bytes | None, codec.RawHeaders], Row]


class Consumed(NamedTuple):
    """What the archive keeps of one consumed Kafka record (a confluent Message adapts).

    A named tuple: one is made per archived record, and tuples are the cheapest to make.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: codec.RawHeaders


class PartlyDecoded(codec.Undecodable):
    """The value is refused, but ``columns`` could be read from it."""

    def __init__(self, reason: str, columns: Row) -> None:
        super().__init__(reason)
        self.columns = columns


def _names(enum: Any, prefix: str) -> dict[int, str]:
    return {v.number: v.name.removeprefix(prefix) for v in enum.DESCRIPTOR.values}


_CONCLUSION = _names(pull_request_pb2.CheckConclusion, "CHECK_CONCLUSION_")
_STATUS = _names(pull_request_pb2.PullRequestStatus, "PULL_REQUEST_STATUS_")
_STATE = _names(outcome_pb2.CommandState, "COMMAND_STATE_")
_KIND = _names(outcome_pb2.ViolationKind, "VIOLATION_KIND_")


def _enum(names: dict[int, str], value: int) -> str:
    return names.get(value, str(value))


def _micros(ts: Timestamp) -> int | None:
    """A protobuf Timestamp as microseconds since the epoch; None when unset."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _text(value: str) -> str | None:
    return value or None


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (version-traceid-spanid-flags), else None."""
    parts = (traceparent or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return None


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


# The event_type column of each oneof case of EventEnvelope.event (PullRequestMerged, ...).
_EVENT_ONEOF = events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["event"]
EVENT_TYPES = {f.name: _camel(f.name) for f in _EVENT_ONEOF.fields}


def command_columns(envelope: commands_pb2.CommandEnvelope) -> Row:
    """The command columns of an envelope (commands and refusals tables)."""
    row: Row = {
        "command_id": _text(envelope.command_id),
        "pull_request_id": _text(envelope.pull_request_id),
        "command_type": command_type_name(envelope) or None,
        "issued_at": _micros(envelope.issued_at),
        "expected_version": (
            envelope.expected_version if envelope.HasField("expected_version") else None
        ),
        "caller": _text(envelope.caller),
        "idempotency_key": _text(envelope.idempotency_key),
    }
    which = envelope.WhichOneof("command")
    if which is None:
        return row
    command: Any = getattr(envelope, which)
    if getattr(command, "pull_request_id", "") and not row["pull_request_id"]:
        row["pull_request_id"] = command.pull_request_id
    if which == "open_pull_request":
        row.update(
            actor=command.author,
            repository=command.repository,
            title=command.title,
            source_branch=command.source_branch,
            target_branch=command.target_branch,
        )
    elif which == "change_pull_request_title":
        row.update(actor=command.changed_by, title=command.title)
    elif which == "approve_pull_request":
        row.update(actor=command.reviewer)
    elif which == "record_check_result":
        row.update(
            actor=_text(envelope.caller),
            check_name=command.check_name,
            check_conclusion=_enum(_CONCLUSION, command.conclusion),
        )
    elif which == "merge_pull_request":
        row.update(
            actor=command.merged_by_user, commit_message=_text(command.commit_message_override)
        )
    elif which in ("close_pull_request", "reopen_pull_request"):
        row.update(actor=command.actor)
    elif which == "revert_pull_request":
        row.update(actor=command.actor, revert_reason=command.reason)
    return row


def _violations(items: Sequence[outcome_pb2.Violation]) -> list[Row]:
    return [
        {
            "kind": _enum(_KIND, v.kind),
            "reason": v.reason,
            "field": _text(v.field),
            "subject": _text(v.subject),
            "description": _text(v.description),
        }
        for v in items
    ]


def _commands(key: bytes | None, value: bytes | None, headers: codec.RawHeaders) -> Row:
    try:
        return command_columns(codec.decode_command(key, value, headers))
    except codec.UndecodableCommand as exc:
        if exc.envelope is None:
            raise
        raise PartlyDecoded(str(exc), command_columns(exc.envelope)) from exc


def _results(key: bytes | None, value: bytes | None, headers: codec.RawHeaders) -> Row:
    result: results_pb2.CommandResult = codec.decode_result(value, headers)
    violations = _violations(result.violations)
    return {
        "command_id": result.command_id,
        "pull_request_id": _text(result.pull_request_id),
        "command_type": _text(result.command_type),
        "outcome": _enum(_STATE, result.state),
        "version": result.version,
        "duplicate": result.duplicate,
        "reason": violations[0]["reason"] if violations else None,
        "violations": violations,
        "error_message": _text(result.error_message),
        "event_ids": [e.event_id for e in result.events],
        "completed_at": _micros(result.completed_at),
    }


def _events(key: bytes | None, value: bytes | None, headers: codec.RawHeaders) -> Row:
    event: events_pb2.EventEnvelope = codec.decode_event(value, headers)
    row: Row = {
        "event_id": event.event_id,
        "pull_request_id": _text(event.pull_request_id),
        "version": event.version,
        "command_id": _text(event.command_id),
        "occurred_at": _micros(event.occurred_at),
    }
    which = event.WhichOneof("event")
    if which is None:
        return row
    row["event_type"] = EVENT_TYPES.get(which) or _camel(which)
    body: Any = getattr(event, which)
    if which == "pull_request_opened":
        row.update(actor=body.author, repository=body.repository, title=body.title)
    elif which == "pull_request_title_changed":
        row.update(actor=body.changed_by, title=body.new_title, old_title=body.old_title)
    elif which == "pull_request_approved":
        row.update(actor=body.reviewer)
    elif which == "check_result_recorded":
        row.update(check_name=body.check_name, check_conclusion=_enum(_CONCLUSION, body.conclusion))
    elif which == "pull_request_status_changed":
        row.update(
            actor=body.actor,
            from_status=_enum(_STATUS, body.from_status),
            to_status=_enum(_STATUS, body.to_status),
        )
    elif which == "pull_request_merged":
        row.update(actor=body.merged_by_user, commit_message=body.commit_message)
    elif which in ("pull_request_closed", "pull_request_reopened"):
        row.update(actor=body.actor)
    elif which == "pull_request_reverted":
        row.update(actor=body.actor, revert_reason=body.reason)
    return row


def _refusals(key: bytes | None, value: bytes | None, headers: codec.RawHeaders) -> Row:
    refusal: CommandRefusal = codec.decode_refusal(value, headers)
    row = command_columns(refusal.command)
    row.update(
        code=refusal.code,
        code_name=_text(refusal.code_name),
        message=_text(refusal.message),
        reason=_text(refusal.reason),
        violations=_violations(refusal.violations),
        refused_at=_micros(refusal.refused_at),
    )
    if refusal.trace_id:
        row["trace_id"] = refusal.trace_id
    return row


@dataclass(frozen=True)
class TableCodec:
    """A table, how one record's value becomes its typed columns, and the ``message-type``
    header value its records carry."""

    spec: TableSpec
    columns: Columns
    message_type: str


def table_codecs(topics: Topics) -> dict[str, TableCodec]:
    """Topic name to the table its records go to."""
    return {
        topics.commands: TableCodec(COMMANDS, _commands, TYPE_COMMAND_ENVELOPE),
        topics.results: TableCodec(RESULTS, _results, TYPE_COMMAND_RESULT),
        topics.events: TableCodec(EVENTS, _events, TYPE_EVENT_ENVELOPE),
        topics.refusals: TableCodec(REFUSALS, _refusals, TYPE_COMMAND_REFUSAL),
    }


def header_texts(raw: codec.RawHeaders) -> tuple[str | None, str | None, str | None]:
    """message-type, correlation-id and traceparent as text (the last non-null value of each);
    one pass, as this runs once per archived record."""
    message_type = correlation_id = traceparent = None
    if raw:
        # A consumed record's headers are a list of pairs; the Mapping check is the slow path.
        for name, value in raw if type(raw) is list else _pairs(raw):
            if value is None:
                continue
            # Decoded inline (no call per header): this runs for every header of every record.
            if name == HEADER_MESSAGE_TYPE:
                message_type = (
                    value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                )
            elif name == HEADER_CORRELATION_ID:
                correlation_id = (
                    value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                )
            elif name == HEADER_TRACEPARENT:
                traceparent = (
                    value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                )
    return message_type, correlation_id, traceparent


def _pairs(raw: codec.RawHeaders) -> Iterable[tuple[str, str | bytes | None]]:
    if raw is None:
        return ()
    return raw.items() if isinstance(raw, Mapping) else raw


def typed_columns(
    table: TableCodec, record: Consumed, message_type: str | None
) -> tuple[Row, str | None]:
    """The typed columns of ``record`` and its decode error (None when it decoded)."""
    # The codec reads only the message-type header, to refuse another type; hand it over only
    # then (reading the headers again for every record would cost as much as the decoding).
    wrong = message_type is not None and message_type != table.message_type
    headers = {HEADER_MESSAGE_TYPE: message_type} if wrong else None
    try:
        return table.columns(record.key, record.value, headers), None
    except PartlyDecoded as exc:
        return exc.columns, str(exc)[:MAX_ERROR_CHARS]
    except codec.Undecodable as exc:
        return {}, str(exc)[:MAX_ERROR_CHARS]
    except Exception as exc:  # an archive keeps everything; the reason goes into the row
        return {}, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def _typed_type(schema: pa.Schema) -> pa.StructType:
    """The typed columns of ``schema`` (all but the Kafka frame and tail) as one struct type."""
    return pa.struct([f for f in schema if f.name not in FRAME_NAMES])


def to_arrow(table: TableCodec, records: Sequence[Consumed], archived_at_us: int) -> pa.Table:
    """The rows of ``records`` (all of ``table``'s topic) in the table's schema: Kafka
    coordinates, headers, typed columns (or the decode error), raw bytes, ``archived_at``.

    This runs once per record of every flush, so it is built for speed: one Python pass over
    the records fills the frame's column lists, and the typed row dicts become Arrow columns
    in one C++ conversion (a struct array of the typed columns, a missing key a NULL), not a
    Python ``row.get`` per column and row.
    """
    schema = table.spec.schema
    n = len(records)
    rows: list[Row] = [{}] * n
    topics: list[str] = [""] * n
    partitions: list[int] = [0] * n
    offsets: list[int] = [0] * n
    timestamps: list[int] = [0] * n
    days: list[int] = [0] * n
    keys: list[str | None] = [None] * n
    values: list[bytes | None] = [None] * n
    message_types: list[str | None] = [None] * n
    correlation_ids: list[str | None] = [None] * n
    traceparents: list[str | None] = [None] * n
    trace_ids: list[str | None] = [None] * n
    errors: list[str | None] = [None] * n
    key_text = codec.key_text
    for i, record in enumerate(records):
        topic, partition, offset, timestamp_ms, key, value, headers = record
        message_type, correlation_id, traceparent = header_texts(headers)
        columns, error = typed_columns(table, record, message_type)
        rows[i] = columns
        topics[i], partitions[i], offsets[i] = topic, partition, offset
        timestamps[i] = timestamp_ms * 1000
        days[i] = timestamp_ms // 86_400_000  # date32: days since the epoch
        keys[i] = None if key is None else key_text(key)
        values[i] = value
        message_types[i], correlation_ids[i], traceparents[i] = (
            message_type,
            correlation_id,
            traceparent,
        )
        # A refusal carries the call's trace id itself.
        trace_ids[i] = columns.get("trace_id") or trace_id(traceparent)
        errors[i] = error
    frame: dict[str, list[Any]] = {
        "kafka_topic": topics,
        "kafka_partition": partitions,
        "kafka_offset": offsets,
        "kafka_timestamp": timestamps,
        "kafka_key": keys,
        "message_type": message_types,
        "correlation_id": correlation_ids,
        "traceparent": traceparents,
        "trace_id": trace_ids,
        "raw": values,
        "decode_error": errors,
        "archived_at": [archived_at_us] * n,
        "day": days,
    }
    typed_type = _typed_type(schema)
    typed = pa.array(rows, typed_type)
    children = dict(zip((f.name for f in typed_type), typed.flatten(), strict=True))
    arrays = [
        pa.array(frame[f.name], f.type) if f.name in frame else children[f.name] for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)
