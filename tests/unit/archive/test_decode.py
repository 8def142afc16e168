"""Records to archive rows without a broker: typed columns, headers, and bad input kept.

The rows are made as the archive makes them (:func:`archive.bulk.to_arrow`); test_bulk.py checks
the bulk and the per-record path agree."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from helpers.ids import bound_id

from archive.bulk import to_arrow
from archive.decode import Consumed, table_codecs, trace_id
from archive.schema import TABLES
from prgate.kafka import codec
from prgate.kafka.contract import Topics
from prgate.v1 import commands_pb2, events_pb2, outcome_pb2, pull_request_pb2, results_pb2
from prgate.v1.refusals_pb2 import CommandRefusal

TOPICS = Topics("a.")
CODECS = table_codecs(TOPICS)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
WHEN_MS = 1_764_547_200_123  # 2025-12-01T00:00:00.123Z
ISSUED = Timestamp(seconds=1_764_547_199, nanos=500_000_000)
C1 = bound_id("c-1", "pr-1")


def merge(pr: str = "pr-1", command_id: str = "") -> commands_pb2.CommandEnvelope:
    return commands_pb2.CommandEnvelope(
        command_id=command_id or bound_id("c-1", pr),
        pull_request_id=pr,
        issued_at=ISSUED,
        caller="alice@example",
        expected_version=4,
        merge_pull_request=commands_pb2.MergePullRequest(
            pull_request_id=pr, merged_by_user="alice", commit_message_override="ship it"
        ),
    )


def consumed(record: codec.Record, offset: int = 7, partition: int = 1) -> Consumed:
    return Consumed(record.topic, partition, offset, WHEN_MS, record.key, record.value,
                    list(record.headers))  # fmt: skip


def one_row(record: Consumed) -> dict[str, object]:
    rows = to_arrow(CODECS[record.topic], [record], archived_at_us=WHEN_MS * 1000).to_pylist()
    assert len(rows) == 1
    return rows[0]


def test_a_command_becomes_typed_columns_with_its_kafka_coordinates() -> None:
    record = codec.command_record(TOPICS.commands, merge(), reply_to="r", traceparent=TRACEPARENT)
    row = one_row(consumed(record))

    assert row["kafka_topic"] == TOPICS.commands
    assert (row["kafka_partition"], row["kafka_offset"]) == (1, 7)
    assert row["kafka_timestamp"] == dt.datetime(2025, 12, 1, 0, 0, 0, 123000, tzinfo=dt.UTC)
    assert row["day"] == dt.date(2025, 12, 1)
    assert (row["kafka_key"], row["message_type"]) == ("pr-1", "prgate.v1.CommandEnvelope")
    assert row["correlation_id"] == C1
    assert row["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert row["command_type"] == "MergePullRequest"
    assert (row["actor"], row["caller"], row["commit_message"]) == ("alice", "alice@example",
                                                                    "ship it")  # fmt: skip
    assert row["expected_version"] == 4
    assert row["issued_at"] == dt.datetime(2025, 11, 30, 23, 59, 59, 500000, tzinfo=dt.UTC)
    assert row["raw"] == record.value
    assert row["decode_error"] is None


def test_garbage_is_kept_with_its_bytes_and_the_reason() -> None:
    record = Consumed(TOPICS.commands, 0, 3, WHEN_MS, b"pr-1", b"\xff\xfe not protobuf", None)
    row = one_row(record)

    assert row["raw"] == b"\xff\xfe not protobuf"
    assert "not a protobuf CommandEnvelope" in str(row["decode_error"])
    assert row["command_id"] is None
    assert row["day"] == dt.date(2025, 12, 1)


@pytest.mark.parametrize("topic", [TOPICS.commands, TOPICS.results, TOPICS.events,
                                   TOPICS.refusals])  # fmt: skip
def test_a_null_value_is_kept_as_undecodable_in_every_table(topic: str) -> None:
    row = one_row(Consumed(topic, 0, 0, WHEN_MS, None, None, None))

    assert row["raw"] is None
    assert row["decode_error"] == "empty value"


def test_a_record_of_another_message_type_is_kept_with_the_reason() -> None:
    record = codec.command_record(TOPICS.commands, merge(), reply_to="r")
    headers = [("message-type", b"prgate.v1.EventEnvelope")]
    row = one_row(consumed(codec.Record(record.topic, record.key, record.value, headers)))

    assert row["message_type"] == "prgate.v1.EventEnvelope"
    assert "is not prgate.v1.CommandEnvelope" in str(row["decode_error"])
    assert row["raw"] == record.value


def test_a_command_keyed_by_another_pull_request_keeps_its_columns_and_the_reason() -> None:
    record = codec.command_record(TOPICS.commands, merge(), reply_to="r")
    row = one_row(consumed(codec.Record(record.topic, b"pr-other", record.value, record.headers)))

    assert row["command_id"] == C1 and row["command_type"] == "MergePullRequest"
    assert "is not the pull request id 'pr-1'" in str(row["decode_error"])


def test_a_command_whose_id_is_not_bound_is_kept_with_its_columns_and_the_reason() -> None:
    # The processor dead-letters it (an id of another pull request, or of an old gateway); the
    # archive keeps it all the same, typed, so an audit can find it.
    for command_id in ("c-1", bound_id("c-1", "pr-other")):
        record = codec.command_record(TOPICS.commands, merge(command_id=command_id), reply_to="r")
        row = one_row(consumed(record))

        assert (row["command_id"], row["pull_request_id"]) == (command_id, "pr-1")
        assert (row["command_type"], row["actor"]) == ("MergePullRequest", "alice")
        assert str(row["decode_error"]).startswith(codec.COMMAND_ID_NOT_BOUND)
        assert row["raw"] == record.value


def test_fields_this_version_does_not_know_decode_and_stay_in_raw() -> None:
    value = merge().SerializeToString() + b"\xa2\x06\x03new"  # field 100, a string
    record = Consumed(TOPICS.commands, 0, 0, WHEN_MS, b"pr-1", value, None)
    row = one_row(record)

    assert row["decode_error"] is None
    assert row["command_type"] == "MergePullRequest"
    assert row["raw"] == value


def test_a_rejected_result_has_its_outcome_reason_and_violations() -> None:
    violation = outcome_pb2.Violation(
        kind=outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION, reason="NOT_APPROVED",
        subject="pr-1", description="needs an approval",
    )  # fmt: skip
    result = results_pb2.CommandResult(
        command_id="c-1", pull_request_id="pr-1", state=outcome_pb2.COMMAND_STATE_REJECTED,
        version=3, violations=[violation], command_type="MergePullRequest",
    )  # fmt: skip
    row = one_row(consumed(codec.result_record(TOPICS.results, result, "c-1")))

    assert (row["outcome"], row["reason"], row["version"]) == ("REJECTED", "NOT_APPROVED", 3)
    assert row["violations"] == [
        {"kind": "FAILED_PRECONDITION", "reason": "NOT_APPROVED", "field": None,
         "subject": "pr-1", "description": "needs an approval"}
    ]  # fmt: skip
    assert row["event_ids"] == [] and row["duplicate"] is False


def test_an_event_names_its_type_actor_and_statuses() -> None:
    event = events_pb2.EventEnvelope(
        event_id="e-1", pull_request_id="pr-1", version=5, command_id="c-1",
        pull_request_status_changed=events_pb2.PullRequestStatusChanged(
            from_status=pull_request_pb2.PULL_REQUEST_STATUS_OPEN,
            to_status=pull_request_pb2.PULL_REQUEST_STATUS_MERGED, actor="alice",
        ),
    )  # fmt: skip
    row = one_row(consumed(codec.event_record(TOPICS.events, event)))

    assert row["event_type"] == "PullRequestStatusChanged"
    assert (row["actor"], row["from_status"], row["to_status"]) == ("alice", "OPEN", "MERGED")
    assert (row["event_id"], row["version"], row["command_id"]) == ("e-1", 5, "c-1")


def test_a_refusal_has_the_command_the_code_and_the_trace() -> None:
    refusal = CommandRefusal(
        command=merge(), code=9, code_name="FAILED_PRECONDITION", reason="NOT_APPROVED",
        message="needs an approval", trace_id="0af7651916cd43dd8448eb211c80319c",
    )  # fmt: skip
    row = one_row(consumed(codec.refusal_record(TOPICS.refusals, refusal)))

    assert (row["command_type"], row["actor"], row["pull_request_id"]) == (
        "MergePullRequest", "alice", "pr-1")  # fmt: skip
    assert (row["code"], row["code_name"], row["reason"]) == (9, "FAILED_PRECONDITION",
                                                               "NOT_APPROVED")  # fmt: skip
    assert row["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert (row["command_id"], row["decode_error"]) == (C1, None)


def test_a_refusal_of_a_command_with_an_unbound_id_decodes_as_it_came() -> None:
    # A refusal is a record of what a gateway turned away, never acted on: whatever id the
    # refused command carried (one from a gateway before bound ids, say) is archived as is.
    refusal = CommandRefusal(command=merge(command_id="c-1"), code=3, code_name="INVALID_ARGUMENT")
    row = one_row(consumed(codec.refusal_record(TOPICS.refusals, refusal)))

    assert (row["command_id"], row["correlation_id"], row["decode_error"]) == ("c-1", "c-1", None)
    assert (row["command_type"], row["code_name"]) == ("MergePullRequest", "INVALID_ARGUMENT")


def test_every_table_has_the_frame_columns_and_a_day_partition() -> None:
    for spec in TABLES:
        assert spec.schema.names[:3] == ["kafka_topic", "kafka_partition", "kafka_offset"]
        assert spec.schema.names[-4:] == ["raw", "decode_error", "archived_at", "day"]
        assert spec.schema.field("day").type == pa.date32()


@pytest.mark.parametrize(
    ("traceparent", "expected"),
    [(TRACEPARENT, "0af7651916cd43dd8448eb211c80319c"), ("garbage", None), (None, None)],
)
def test_trace_id_of_a_traceparent(traceparent: str | None, expected: str | None) -> None:
    assert trace_id(traceparent) == expected
