"""The archive tables' columns: one Delta table per topic, partitioned by ``day``.

Every table starts with the Kafka coordinates and fixed headers of the record and ends with the
record's value as consumed (``raw``), ``decode_error`` (NULL when the value decoded),
``archived_at`` and ``day`` (the UTC date of the Kafka timestamp, so undecodable records get a
day too). In between are the typed columns of the topic's protobuf value. Enum values are
stored by name without their prefix (``SUCCEEDED``, ``MERGED``, ``FAILED_PRECONDITION``).

Columns are only ever added, never renamed or dropped: every write merges its schema into the
table's, so a newer archive adds a column and an older one writing beside it leaves it NULL.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
PARTITION_COLUMN = "day"

KAFKA_FIELDS = [
    pa.field("kafka_topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", TIMESTAMP, nullable=False),
    pa.field("kafka_key", pa.string()),
    pa.field("message_type", pa.string()),
    pa.field("correlation_id", pa.string()),
    pa.field("traceparent", pa.string()),
    pa.field("trace_id", pa.string()),  # 32 hex digits from traceparent
]
TAIL_FIELDS = [
    pa.field("raw", pa.binary()),
    pa.field("decode_error", pa.string()),
    pa.field("archived_at", TIMESTAMP, nullable=False),
    pa.field(PARTITION_COLUMN, pa.date32(), nullable=False),
]
FRAME_NAMES = frozenset(f.name for f in KAFKA_FIELDS + TAIL_FIELDS)

VIOLATION = pa.struct(
    [
        pa.field("kind", pa.string()),  # INVALID_ARGUMENT, FAILED_PRECONDITION, ...
        pa.field("reason", pa.string()),  # NOT_APPROVED, TITLE_TOO_LONG, ...
        pa.field("field", pa.string()),
        pa.field("subject", pa.string()),
        pa.field("description", pa.string()),
    ]
)

# The command columns, shared by the commands and refusals tables.
COMMAND_FIELDS = [
    pa.field("command_id", pa.string()),
    pa.field("pull_request_id", pa.string()),
    pa.field("command_type", pa.string()),  # MergePullRequest, ...
    pa.field("issued_at", TIMESTAMP),
    pa.field("expected_version", pa.int64()),
    pa.field("caller", pa.string()),
    pa.field("idempotency_key", pa.string()),
    # author, changed_by, reviewer, merged_by_user or actor; the caller for RecordCheckResult
    pa.field("actor", pa.string()),
    pa.field("repository", pa.string()),
    pa.field("title", pa.string()),
    pa.field("source_branch", pa.string()),
    pa.field("target_branch", pa.string()),
    pa.field("check_name", pa.string()),
    pa.field("check_conclusion", pa.string()),
    pa.field("commit_message", pa.string()),  # MergePullRequest.commit_message_override
    pa.field("revert_reason", pa.string()),
]

RESULT_FIELDS = [
    pa.field("command_id", pa.string()),
    pa.field("pull_request_id", pa.string()),
    pa.field("command_type", pa.string()),
    pa.field("outcome", pa.string()),  # SUCCEEDED, REJECTED or FAILED
    pa.field("version", pa.int64()),
    pa.field("duplicate", pa.bool_()),
    pa.field("reason", pa.string()),  # the first violation's reason
    pa.field("violations", pa.list_(VIOLATION)),
    pa.field("error_message", pa.string()),
    pa.field("event_ids", pa.list_(pa.string())),
    pa.field("completed_at", TIMESTAMP),
]

EVENT_FIELDS = [
    pa.field("event_id", pa.string()),
    pa.field("pull_request_id", pa.string()),
    pa.field("version", pa.int64()),
    pa.field("command_id", pa.string()),
    pa.field("event_type", pa.string()),  # PullRequestMerged, ...
    pa.field("occurred_at", TIMESTAMP),
    pa.field("actor", pa.string()),
    pa.field("repository", pa.string()),
    pa.field("title", pa.string()),  # the title opened with, or the new title
    pa.field("old_title", pa.string()),
    pa.field("check_name", pa.string()),
    pa.field("check_conclusion", pa.string()),
    pa.field("from_status", pa.string()),
    pa.field("to_status", pa.string()),
    pa.field("commit_message", pa.string()),
    pa.field("revert_reason", pa.string()),
]

REFUSAL_FIELDS = [
    *COMMAND_FIELDS,
    pa.field("code", pa.int32()),  # google.rpc.Code value
    pa.field("code_name", pa.string()),  # FAILED_PRECONDITION, ...
    pa.field("message", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("violations", pa.list_(VIOLATION)),
    pa.field("refused_at", TIMESTAMP),
]


def table_schema(fields: list[pa.Field]) -> pa.Schema:
    """The schema of a table whose typed columns are ``fields``."""
    return pa.schema([*KAFKA_FIELDS, *fields, *TAIL_FIELDS])


@dataclass(frozen=True)
class TableSpec:
    """One archive table: its name (and directory under the root) and its schema."""

    name: str
    schema: pa.Schema


COMMANDS = TableSpec("commands", table_schema(COMMAND_FIELDS))
RESULTS = TableSpec("results", table_schema(RESULT_FIELDS))
EVENTS = TableSpec("events", table_schema(EVENT_FIELDS))
REFUSALS = TableSpec("refusals", table_schema(REFUSAL_FIELDS))
TABLES = (COMMANDS, RESULTS, EVENTS, REFUSALS)
