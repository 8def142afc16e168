"""Consumed records to Arrow tables in bulk: whole batches decoded in native code.

:func:`columns_to_arrow` is what the archive writes with (:func:`to_arrow` for records as
tuples). Per batch it takes each field of the consumed messages into one Python list,
converts the lists to Arrow in C++, decodes every value of the commands, results and events
topics with ptars (protobuf wire format straight into Arrow builders, in Rust; fields no
column needs are skipped on the wire) and derives the typed columns with Arrow compute
kernels: no Python work per field and row.

The per-record path of :mod:`archive.decode` stays the definition of a row. A row the bulk
checks cannot vouch for is handed to it and its result replaces the bulk one: a value ptars
refuses, an empty or absent value, a record whose ``message-type`` header names another type,
an enum number this version has no name for, and every row the record codec would refuse
(a command without id, known command, pull request id, key equal to it or an id bound to it;
a result without command id; an event without event id). So a bad record costs what it cost
before and keeps its ``decode_error`` word for word; the rest never meet Python.
``tests/unit/archive/test_bulk.py`` checks both paths give the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Message
from google.protobuf import descriptor_pb2, descriptor_pool
from ptars import HandlerPool, PtarsConfig

from archive import decode
from archive.decode import Consumed, Row, TableCodec
from archive.schema import FRAME_NAMES, TIMESTAMP
from prgate.domain.commands import COMMAND_TYPES, OPEN
from prgate.kafka import codec, command_ids
from prgate.kafka.contract import (
    HEADER_CORRELATION_ID,
    HEADER_MESSAGE_TYPE,
    HEADER_TRACEPARENT,
    TYPE_COMMAND_ENVELOPE,
    TYPE_COMMAND_RESULT,
    TYPE_EVENT_ENVELOPE,
)
from prgate.v1 import commands_pb2, events_pb2, results_pb2

# Fields no column is made of, left out of what ptars decodes (it skips them on the wire): the
# pull request descriptions, and of a result's events all but their ids.
_UNUSED = {"OpenPullRequest": "description", "PullRequestOpened": "description"}
_EVENT_ID_ONLY = "ArchiveEventId"


def _decoded_files() -> list[Any]:
    """The commands, events and results files as the archive decodes them (see _UNUSED), in a
    descriptor pool of their own: the generated classes are untouched."""
    ordered: list[Any] = []

    def add(file: Any) -> None:
        for dependency in file.dependencies:
            add(dependency)
        if file not in ordered:
            ordered.append(file)

    wanted = [commands_pb2.DESCRIPTOR, events_pb2.DESCRIPTOR, results_pb2.DESCRIPTOR]
    for file in wanted:
        add(file)
    pool = descriptor_pool.DescriptorPool()
    event_id = events_pb2.EventEnvelope.DESCRIPTOR.fields_by_name["event_id"]
    for file in ordered:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        for message in proto.message_type:
            if message.name in _UNUSED:
                kept = [f for f in message.field if f.name != _UNUSED[message.name]]
                del message.field[:]
                message.field.extend(kept)
            if message.name == results_pb2.CommandResult.DESCRIPTOR.name:
                events = next(f for f in message.field if f.name == "events")
                events.type_name = f".{proto.package}.{_EVENT_ID_ONLY}"
                reference = proto.message_type.add(name=_EVENT_ID_ONLY)
                reference.field.add(
                    name=event_id.name,
                    number=event_id.number,
                    type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                )
        pool.Add(proto)
    return [pool.FindFileByName(file.name) for file in wanted]


_FILES = _decoded_files()
_POOL = HandlerPool(
    _FILES, PtarsConfig(timestamp_unit="us", timestamp_tz="UTC", enum_repr="string")
)
_HEADER = pa.list_(pa.struct([("name", pa.string()), ("value", pa.binary())]))
_TRACE_ID = r"^[^-]*-(?P<trace_id>[^-]{32})-[^-]*-[^-]*$"  # as decode.trace_id
_COMMAND_ID = (
    rf"^[0-9a-f]{{{command_ids.BASE_HEX}}}\{command_ids.SEPARATOR}"
    rf"[0-9a-f]{{{command_ids.TAG_HEX}}}$"
)
_TAG_START = command_ids.BASE_HEX + len(command_ids.SEPARATOR)
_MS_PER_DAY = 86_400_000

# Typed column -> the (oneof case, field) it is read from; the first case set in a row wins
# (only one is). As in archive.decode: command_columns and _events.
_COMMAND_FIELDS: dict[str, list[tuple[str, str]]] = {
    "actor": [
        ("open_pull_request", "author"),
        ("change_pull_request_title", "changed_by"),
        ("approve_pull_request", "reviewer"),
        ("merge_pull_request", "merged_by_user"),
        ("close_pull_request", "actor"),
        ("reopen_pull_request", "actor"),
        ("revert_pull_request", "actor"),
    ],
    "repository": [("open_pull_request", "repository")],
    "title": [("open_pull_request", "title"), ("change_pull_request_title", "title")],
    "source_branch": [("open_pull_request", "source_branch")],
    "target_branch": [("open_pull_request", "target_branch")],
    "check_name": [("record_check_result", "check_name")],
    "revert_reason": [("revert_pull_request", "reason")],
}
_EVENT_FIELDS: dict[str, list[tuple[str, str]]] = {
    "actor": [
        ("pull_request_opened", "author"),
        ("pull_request_title_changed", "changed_by"),
        ("pull_request_approved", "reviewer"),
        ("pull_request_status_changed", "actor"),
        ("pull_request_merged", "merged_by_user"),
        ("pull_request_closed", "actor"),
        ("pull_request_reopened", "actor"),
        ("pull_request_reverted", "actor"),
    ],
    "repository": [("pull_request_opened", "repository")],
    "title": [("pull_request_opened", "title"), ("pull_request_title_changed", "new_title")],
    "old_title": [("pull_request_title_changed", "old_title")],
    "check_name": [("check_result_recorded", "check_name")],
    "commit_message": [("pull_request_merged", "commit_message")],
    "revert_reason": [("pull_request_reverted", "reason")],
}
_COMMAND_CASES = list(COMMAND_TYPES)
_EVENT_CASES = [f.name for f in events_pb2.EventEnvelope.DESCRIPTOR.oneofs_by_name["event"].fields]


def _nonempty(values: Any) -> Any:
    """The strings of ``values`` with "" as NULL (``decode._text``)."""
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)


def _micros(values: Any) -> Any:
    """Timestamps with the epoch itself as NULL (``decode._micros``: unset reads as zero)."""
    as_int = values.cast(pa.int64())
    return pc.if_else(pc.equal(as_int, 0), pa.scalar(None, TIMESTAMP), values.cast(TIMESTAMP))


def _from_cases(batch: pa.RecordBatch, sources: list[tuple[str, str]]) -> Any:
    """The first non-null of ``case.field`` over ``sources`` (NULL where no case is set)."""
    fields = [pc.struct_field(batch[case], [field]) for case, field in sources]
    return fields[0] if len(fields) == 1 else pc.coalesce(*fields)


def _which(batch: pa.RecordBatch, cases: list[str], names: list[str]) -> Any:
    """The name of the oneof case set in each row (NULL for none)."""
    conditions = pc.make_struct(*[pc.is_valid(batch[c]) for c in cases], field_names=cases)
    return pc.case_when(conditions, *[pa.scalar(n, pa.string()) for n in names])


class _Enum:
    """Enum names as ptars writes them (``CHECK_CONCLUSION_SUCCESS``) to the archive's
    (``SUCCESS``); a value without the prefix (a number this version does not know) marks its
    row for the per-record path, which writes the number."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.suspect: list[Any] = []

    def __call__(self, values: Any) -> Any:
        known = pc.starts_with(values, self.prefix)
        self.suspect.append(pc.invert(pc.fill_null(known, True)).to_numpy(zero_copy_only=False))
        return pc.utf8_slice_codeunits(values, len(self.prefix))


def _first(lists: pa.ListArray, values: Any) -> Any:
    """Per list, ``values`` at its first element; NULL for an empty list."""
    offsets = lists.offsets.to_numpy()
    starts = offsets[:-1]
    return pc.take(values, pa.array(starts, pa.int64(), mask=offsets[1:] == starts))


def _violations(lists: pa.ListArray, enum: _Enum) -> tuple[pa.ListArray, Any]:
    """The violations list as the schema has it, and the first violation's reason."""
    flat = lists.values
    fields = {
        "kind": enum(flat.field("kind")),
        "reason": flat.field("reason"),
        "field": _nonempty(flat.field("field")),
        "subject": _nonempty(flat.field("subject")),
        "description": _nonempty(flat.field("description")),
    }
    items = pa.StructArray.from_arrays(list(fields.values()), names=list(fields))
    return pa.ListArray.from_arrays(lists.offsets, items), _first(lists, fields["reason"])


def _commands(batch: pa.RecordBatch, keys: pa.Array) -> tuple[dict[str, Any], Any, list[Any]]:
    envelope_pr = batch["pull_request_id"]
    own_pr = _from_cases(batch, [(c, "pull_request_id") for c in _COMMAND_CASES if c != OPEN])
    pr = pc.if_else(pc.equal(envelope_pr, ""), _nonempty(pc.fill_null(own_pr, "")), envelope_pr)
    # prgate.domain.pull_request_id_of: the command's own id first, the envelope's as fallback.
    pr_of = pc.if_else(
        pc.or_kleene(pc.is_valid(batch[OPEN]), pc.equal(pc.fill_null(own_pr, ""), "")),
        envelope_pr,
        own_pr,
    )
    caller = _nonempty(batch["caller"])
    check = batch["record_check_result"]
    merge = batch["merge_pull_request"]
    enum = _Enum("CHECK_CONCLUSION_")
    columns = {name: _from_cases(batch, sources) for name, sources in _COMMAND_FIELDS.items()}
    columns["actor"] = pc.coalesce(
        columns["actor"], pc.if_else(pc.is_valid(check), caller, pa.scalar(None, pa.string()))
    )
    columns.update(
        command_id=_nonempty(batch["command_id"]),
        pull_request_id=pr,
        command_type=_which(batch, _COMMAND_CASES, [COMMAND_TYPES[c] for c in _COMMAND_CASES]),
        issued_at=_micros(batch["issued_at"]),
        expected_version=batch["expected_version"],
        caller=caller,
        idempotency_key=_nonempty(batch["idempotency_key"]),
        check_conclusion=enum(pc.struct_field(check, ["conclusion"])),
        commit_message=_nonempty(pc.struct_field(merge, ["commit_message_override"])),
    )
    # decode_command's checks; a row failing any goes the per-record way for its reason.
    command_id = batch["command_id"]
    tags = _tags(pr_of)
    ok = [
        pc.not_equal(command_id, ""),
        pc.is_valid(columns["command_type"]),
        pc.not_equal(pr_of, ""),
        pc.equal(keys, pr_of.cast(pa.binary())),
        pc.match_substring_regex(command_id, _COMMAND_ID),
        pc.equal(pc.utf8_slice_codeunits(command_id, _TAG_START), tags),
    ]
    return columns, _all(ok), enum.suspect


def _tags(pull_request_ids: Any) -> Any:
    """command_ids.tag_of of each id, hashed once per distinct id of the batch."""
    distinct = pc.unique(pull_request_ids)
    tags = pa.array([command_ids.tag_of(p) for p in distinct.to_pylist()], pa.string())
    return pc.take(tags, pc.index_in(pull_request_ids, value_set=distinct))


def _results(batch: pa.RecordBatch, keys: pa.Array) -> tuple[dict[str, Any], Any, list[Any]]:
    enum = _Enum("COMMAND_STATE_")
    kinds = _Enum("VIOLATION_KIND_")
    violations, reason = _violations(batch["violations"], kinds)
    # An unknown violation kind marks the row its list belongs to.
    parents = pc.list_parent_indices(batch["violations"]).to_numpy()
    unknown_kind = np.zeros(batch.num_rows, bool)
    for flags in kinds.suspect:
        unknown_kind[parents[flags]] = True
    events: pa.ListArray = batch["events"]
    event_ids = pa.ListArray.from_arrays(events.offsets, events.values.field("event_id"))
    columns = {
        "command_id": batch["command_id"],
        "pull_request_id": _nonempty(batch["pull_request_id"]),
        "command_type": _nonempty(batch["command_type"]),
        "outcome": enum(batch["state"]),
        "version": batch["version"],
        "duplicate": batch["duplicate"],
        "reason": reason,
        "violations": violations,
        "error_message": _nonempty(batch["error_message"]),
        "event_ids": event_ids,
        "completed_at": _micros(batch["completed_at"]),
    }
    return columns, pc.not_equal(batch["command_id"], ""), [*enum.suspect, unknown_kind]


def _events(batch: pa.RecordBatch, keys: pa.Array) -> tuple[dict[str, Any], Any, list[Any]]:
    conclusion = _Enum("CHECK_CONCLUSION_")
    status = _Enum("PULL_REQUEST_STATUS_")
    changed = batch["pull_request_status_changed"]
    columns = {name: _from_cases(batch, sources) for name, sources in _EVENT_FIELDS.items()}
    columns.update(
        event_id=batch["event_id"],
        pull_request_id=_nonempty(batch["pull_request_id"]),
        version=batch["version"],
        command_id=_nonempty(batch["command_id"]),
        event_type=_which(batch, _EVENT_CASES, [decode.EVENT_TYPES[c] for c in _EVENT_CASES]),
        occurred_at=_micros(batch["occurred_at"]),
        check_conclusion=conclusion(
            pc.struct_field(batch["check_result_recorded"], ["conclusion"])
        ),
        from_status=status(pc.struct_field(changed, ["from_status"])),
        to_status=status(pc.struct_field(changed, ["to_status"])),
    )
    ok = pc.not_equal(batch["event_id"], "")
    return columns, ok, conclusion.suspect + status.suspect


_BULK = {
    TYPE_COMMAND_ENVELOPE: (_FILES[0].message_types_by_name["CommandEnvelope"], _commands),
    TYPE_COMMAND_RESULT: (_FILES[2].message_types_by_name["CommandResult"], _results),
    TYPE_EVENT_ENVELOPE: (_FILES[1].message_types_by_name["EventEnvelope"], _events),
}


def _all(conditions: list[Any]) -> Any:
    out = conditions[0]
    for condition in conditions[1:]:
        out = pc.and_kleene(out, condition)
    return out


def _parse(handler: Any, raw: pa.BinaryArray) -> tuple[pa.RecordBatch, np.ndarray]:
    """ptars' batch of the values in ``raw`` and the rows it could not vouch for (empty,
    absent, or refused: those are parsed as empty messages, left to the per-record path)."""
    empty = pa.scalar(b"", pa.binary())
    plain = pc.fill_null(raw, empty)
    suspect = pc.equal(pc.binary_length(plain), 0).to_numpy(zero_copy_only=False)
    try:
        return handler.array_to_record_batch(plain), suspect
    except Exception:  # one bad value refuses the batch: find it, one value at a time
        values = plain.to_pylist()
        for i, value in enumerate(values):
            try:
                handler.list_to_record_batch([value])
            except Exception:
                values[i], suspect[i] = b"", True
        return handler.list_to_record_batch(values), suspect


def _headers(headers: Sequence[codec.RawHeaders], n: int) -> dict[str, pa.Array] | None:
    """message-type, correlation-id and traceparent columns (the last non-null value of each);
    None when the headers are not the consumer's lists of (name, bytes) pairs."""
    try:
        lists = pa.array(headers, _HEADER)
        names, values = lists.flatten().field("name"), lists.flatten().field("value")
        parents = pc.list_parent_indices(lists).to_numpy()
    except (pa.ArrowException, TypeError, ValueError):
        return None
    out = {}
    for name in (HEADER_MESSAGE_TYPE, HEADER_CORRELATION_ID, HEADER_TRACEPARENT):
        hits = pc.and_(pc.equal(names, name), pc.is_valid(values))
        positions = np.flatnonzero(hits.to_numpy(zero_copy_only=False))
        last = np.full(n, -1, np.int64)
        last[parents[positions]] = positions  # a repeated header: the last one wins
        found = pc.take(values, pa.array(last, mask=last < 0))
        try:
            out[name] = found.cast(pa.string())
        except pa.ArrowInvalid:  # not UTF-8: decoded with replacement, as decode._headers
            texts = [None if v is None else v.decode("utf-8", "replace") for v in found.to_pylist()]
            out[name] = pa.array(texts, pa.string())
    return out


class RecordColumns(NamedTuple):
    """Consumed records as one sequence per field (the fields of :class:`Consumed`)."""

    topics: Sequence[str]
    partitions: Sequence[int]
    offsets: Sequence[int]
    timestamps_ms: Sequence[int]
    keys: Sequence[bytes | None]
    values: Sequence[bytes | None]
    headers: Sequence[codec.RawHeaders]

    def record(self, i: int) -> Consumed:
        return Consumed(
            self.topics[i], self.partitions[i], self.offsets[i], self.timestamps_ms[i],
            self.keys[i], self.values[i], self.headers[i],
        )  # fmt: skip

    @classmethod
    def of_records(cls, records: Sequence[Consumed]) -> RecordColumns:
        if not records:
            return cls([], [], [], [], [], [], [])
        return cls(*zip(*records, strict=True))

    @classmethod
    def of_messages(cls, messages: Sequence[Message]) -> RecordColumns:
        """The fields of consumed confluent-kafka messages (not errors: topic, partition and
        offset are set), one list comprehension each (no tuple per record)."""
        return cls(
            cast("list[str]", [m.topic() for m in messages]),
            cast("list[int]", [m.partition() for m in messages]),
            cast("list[int]", [m.offset() for m in messages]),
            [m.timestamp()[1] for m in messages],
            [m.key() for m in messages],
            [m.value() for m in messages],
            [m.headers() for m in messages],
        )


def _frame(
    columns: RecordColumns, archived_at_us: int
) -> tuple[dict[str, Any], pa.Array, pa.Array]:
    """The Kafka and tail columns, the keys as binary, and ``message_type``."""
    topics, partitions, offsets, timestamps, keys, values, headers = columns
    n = len(offsets)
    stamps = np.asarray(timestamps, np.int64)
    key_array = pa.array(keys, pa.binary())
    try:
        key_text = key_array.cast(pa.string())
    except pa.ArrowInvalid:
        key_text = pa.array([None if k is None else codec.key_text(k) for k in keys], pa.string())
    by_header = _headers(headers, n)
    if by_header is None:
        slow = [decode.header_texts(h) for h in headers]
        names = (HEADER_MESSAGE_TYPE, HEADER_CORRELATION_ID, HEADER_TRACEPARENT)
        by_header = {
            name: pa.array([h[i] for h in slow], pa.string()) for i, name in enumerate(names)
        }
    traceparent = by_header[HEADER_TRACEPARENT]
    frame = {
        "kafka_topic": pa.array(topics, pa.string()),
        "kafka_partition": pa.array(partitions, pa.int32()),
        "kafka_offset": pa.array(offsets, pa.int64()),
        "kafka_timestamp": pa.array(stamps * 1000).cast(TIMESTAMP),
        "kafka_key": key_text,
        "message_type": by_header[HEADER_MESSAGE_TYPE],
        "correlation_id": by_header[HEADER_CORRELATION_ID],
        "traceparent": traceparent,
        "trace_id": pc.struct_field(pc.extract_regex(traceparent, _TRACE_ID), [0]),
        "raw": pa.array(values, pa.binary()),
        "archived_at": pa.array(np.full(n, archived_at_us, np.int64)).cast(TIMESTAMP),
        "day": pa.array((stamps // _MS_PER_DAY).astype(np.int32)).cast(pa.date32()),
    }
    return frame, key_array, by_header[HEADER_MESSAGE_TYPE]


def to_arrow(table: TableCodec, records: Sequence[Consumed], archived_at_us: int) -> pa.Table:
    """The rows of ``records`` (all of ``table``'s topic) in the table's schema, the same rows
    as :func:`archive.decode.to_arrow` makes; see the module docstring for how."""
    return columns_to_arrow(table, RecordColumns.of_records(records), archived_at_us)


def columns_to_arrow(table: TableCodec, columns: RecordColumns, archived_at_us: int) -> pa.Table:
    """:func:`to_arrow` of records given as columns (:meth:`RecordColumns.of_messages`)."""
    bulk = _BULK.get(table.message_type)
    n = len(columns.offsets)
    if bulk is None or not n:  # refusals: few, and their trace id comes from the value
        records = [columns.record(i) for i in range(n)]
        return decode.to_arrow(table, records, archived_at_us)
    schema = table.spec.schema
    frame, keys, message_types = _frame(columns, archived_at_us)
    descriptor, derive = bulk
    batch, suspect = _parse(_POOL.get_for_message(descriptor), frame["raw"])
    typed, ok, enum_suspects = derive(batch, keys)
    right_type = pc.fill_null(pc.equal(message_types, table.message_type), True)
    good = pc.fill_null(pc.and_kleene(ok, right_type), False).to_numpy(zero_copy_only=False)
    good &= ~suspect
    for flags in enum_suspects:
        good &= ~np.asarray(flags, bool)
    typed_fields = [f for f in schema if f.name not in FRAME_NAMES]
    arrays = {f.name: typed[f.name].cast(f.type) for f in typed_fields}
    errors = pa.nulls(n, pa.string())
    redo = np.flatnonzero(~good)
    if redo.size:
        arrays, errors = _redo(table, columns, redo, arrays, frame["message_type"])
    frame["decode_error"] = errors
    return pa.Table.from_arrays(
        [frame[f.name] if f.name in frame else arrays[f.name] for f in schema], schema=schema
    )


def _redo(
    table: TableCodec,
    columns: RecordColumns,
    redo: np.ndarray,
    arrays: dict[str, pa.Array],
    message_type_column: pa.Array,
) -> tuple[dict[str, pa.Array], pa.Array]:
    """Rows ``redo`` through the per-record path; their columns and errors replace the bulk
    ones (an index take: bulk rows first, then the redone, back in record order)."""
    n = len(columns.offsets)
    typed_fields = [f for f in table.spec.schema if f.name in arrays]
    message_types = message_type_column.to_pylist()
    rows: list[Row] = []
    errors: list[str | None] = []
    for i in redo.tolist():
        row, error = decode.typed_columns(table, columns.record(i), message_types[i])
        rows.append(row)
        errors.append(error)
    redone = pa.array(rows, pa.struct(typed_fields))
    keep = np.ones(n, bool)
    keep[redo] = False
    kept = np.flatnonzero(keep)
    order = np.argsort(np.concatenate([kept, redo]), kind="stable")
    indices = pa.array(order)
    out = {}
    for f, redone_column in zip(typed_fields, redone.flatten(), strict=True):
        merged = pa.concat_arrays([arrays[f.name].take(pa.array(kept)), redone_column])
        out[f.name] = merged.take(indices)
    error_column = pa.concat_arrays(
        [pa.nulls(kept.size, pa.string()), pa.array(errors, pa.string())]
    ).take(indices)
    return out, error_column
