"""The record codec without a broker: round trips, header forms, and every way a record fails."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
from helpers.ids import bound_id

from prgate.kafka import codec
from prgate.kafka.contract import (
    HEADER_CORRELATION_ID,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_SOURCE,
    HEADER_MESSAGE_TYPE,
    HEADER_REPLY_TO,
    HEADER_TRACEPARENT,
    TYPE_COMMAND_ENVELOPE,
    TYPE_COMMAND_REFUSAL,
    TYPE_COMMAND_RESULT,
    TYPE_EVENT_ENVELOPE,
    TYPE_PULL_REQUEST,
    Topics,
)
from prgate.v1 import (
    commands_pb2,
    events_pb2,
    outcome_pb2,
    pull_request_pb2,
    refusals_pb2,
    results_pb2,
)

TOPICS = Topics("c.")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


C1 = bound_id("c-1", "pr-1")


def approve(command_id: str = "", pr: str = "pr-1") -> commands_pb2.CommandEnvelope:
    return commands_pb2.CommandEnvelope(
        command_id=command_id or bound_id("c-1", pr),
        pull_request_id=pr,
        approve_pull_request=commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer="bob"),
    )


def event() -> events_pb2.EventEnvelope:
    return events_pb2.EventEnvelope(
        event_id="e-1", pull_request_id="pr-1", version=3, command_id="c-1"
    )


def snapshot() -> pull_request_pb2.PullRequest:
    return pull_request_pb2.PullRequest(pull_request_id="pr-1", title="T", version=3)


def result() -> results_pb2.CommandResult:
    return results_pb2.CommandResult(
        command_id="c-1", pull_request_id="pr-1", state=outcome_pb2.COMMAND_STATE_SUCCEEDED
    )


def as_consumed(headers: codec.Headers) -> list[tuple[str, Any]]:
    """Headers as a consumer hands them back: a list of (str, bytes) pairs."""
    return [(name, value) for name, value in headers]


# -- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("a", b"1"), ("b", b"two")],
        [("a", "1"), ("b", "two")],
        {"a": b"1", "b": "two"},
        [("a", b"0"), ("b", b"two"), ("a", b"1")],  # the last value wins
        [("a", b"1"), ("b", b"two"), ("a", None)],  # a null value is no value
    ],
    ids=["bytes", "str", "dict", "repeated", "null"],
)
def test_the_header_reader_takes_every_form_a_consumer_hands_out(headers: Any) -> None:
    assert codec.header(headers, "a") == "1"
    assert codec.header(headers, "b") == "two"
    assert codec.header(headers, "missing") is None
    assert codec.header_texts(headers) == {"a": "1", "b": "two"}


@pytest.mark.parametrize("headers", [None, [], {}])
def test_no_headers_read_as_none(headers: Any) -> None:
    assert codec.header(headers, HEADER_MESSAGE_TYPE) is None
    assert codec.header_texts(headers) == {}


def test_undecodable_header_bytes_are_replaced_not_raised() -> None:
    assert codec.header([("x", b"ok\xff")], "x") == "ok\ufffd"


def test_the_header_writer_writes_the_type_and_only_the_headers_given() -> None:
    assert codec.record_headers(TYPE_PULL_REQUEST) == [
        (HEADER_MESSAGE_TYPE, TYPE_PULL_REQUEST.encode())
    ]
    written = codec.record_headers(
        TYPE_COMMAND_ENVELOPE, correlation_id="c-1", reply_to="inbox", traceparent=TRACEPARENT
    )
    assert written == [
        (HEADER_MESSAGE_TYPE, b"prgate.v1.CommandEnvelope"),
        (HEADER_CORRELATION_ID, b"c-1"),
        (HEADER_REPLY_TO, b"inbox"),
        (HEADER_TRACEPARENT, TRACEPARENT.encode()),
    ]
    assert codec.record_headers(TYPE_COMMAND_RESULT, correlation_id="c-1", traceparent="") == [
        (HEADER_MESSAGE_TYPE, b"prgate.v1.CommandResult"),
        (HEADER_CORRELATION_ID, b"c-1"),
    ]


def test_key_text() -> None:
    assert codec.key_text(None) == ""
    assert codec.key_text(b"pr-1") == "pr-1"
    assert codec.key_text(b"\xff") == "\ufffd"


# -- round trips ------------------------------------------------------------------------------


def test_a_command_round_trips_as_the_gateway_produces_it() -> None:
    envelope = approve()
    record = codec.command_record(
        TOPICS.commands, envelope, reply_to=TOPICS.results, traceparent=TRACEPARENT
    )
    assert (record.topic, record.key) == (TOPICS.commands, b"pr-1")
    assert codec.header_texts(record.headers) == {
        HEADER_MESSAGE_TYPE: TYPE_COMMAND_ENVELOPE,
        HEADER_CORRELATION_ID: C1,
        HEADER_REPLY_TO: TOPICS.results,
        HEADER_TRACEPARENT: TRACEPARENT,
    }
    decoded = codec.decode_command(record.key, record.value, as_consumed(record.headers))
    assert decoded == envelope


def test_an_event_round_trips() -> None:
    record = codec.event_record(TOPICS.events, event(), TRACEPARENT)
    assert (record.topic, record.key) == (TOPICS.events, b"pr-1")
    assert codec.header(record.headers, HEADER_CORRELATION_ID) == "c-1"
    assert codec.header(record.headers, HEADER_TRACEPARENT) == TRACEPARENT
    assert codec.decode_event(record.value, as_consumed(record.headers)) == event()


def test_a_snapshot_round_trips_with_the_causing_command_as_correlation_id() -> None:
    record = codec.snapshot_record(TOPICS.pull_requests, snapshot(), "c-9")
    assert (record.topic, record.key) == (TOPICS.pull_requests, b"pr-1")
    assert codec.header_texts(record.headers) == {
        HEADER_MESSAGE_TYPE: TYPE_PULL_REQUEST,
        HEADER_CORRELATION_ID: "c-9",
    }
    assert codec.decode_snapshot(record.key, record.value, record.headers) == snapshot()


def test_a_result_round_trips_keyed_by_command_id_with_the_correlation_id_echoed() -> None:
    record = codec.result_record("inbox", result(), "corr-7", TRACEPARENT)
    assert (record.topic, record.key) == ("inbox", b"c-1")
    assert codec.header(record.headers, HEADER_CORRELATION_ID) == "corr-7"
    assert codec.header(record.headers, HEADER_MESSAGE_TYPE) == TYPE_COMMAND_RESULT
    assert codec.decode_result(record.value, dict(as_consumed(record.headers))) == result()


def test_a_dead_letter_keeps_the_record_as_received_and_round_trips() -> None:
    received: list[tuple[str, Any]] = [
        (HEADER_CORRELATION_ID, b"c-9"),
        ("x-mine", None),
        ("x-text", "str value"),
    ]
    source = codec.dlq_source(TOPICS.commands, 2, 41)
    record = codec.dead_letter_record(
        TOPICS.dlq, b"pr-1", b"\xff junk", received, source=source, error="empty value"
    )
    assert (record.topic, record.key, record.value) == (TOPICS.dlq, b"pr-1", b"\xff junk")
    assert record.headers == [
        (HEADER_CORRELATION_ID, b"c-9"),
        ("x-mine", None),
        ("x-text", b"str value"),
        (HEADER_DLQ_ERROR, b"empty value"),
        (HEADER_DLQ_SOURCE, f"{TOPICS.commands}/2/41".encode()),
    ]
    letter = codec.decode_dead_letter(record.key, record.value, record.headers)
    assert letter == codec.DeadLetter(
        error="empty value",
        source_topic=TOPICS.commands,
        source_partition=2,
        source_offset=41,
        key=b"pr-1",
        value=b"\xff junk",
        headers=[(HEADER_CORRELATION_ID, b"c-9"), ("x-mine", None), ("x-text", b"str value")],
    )


def test_a_long_dlq_error_is_cut() -> None:
    record = codec.dead_letter_record(
        TOPICS.dlq, None, None, None, source="t/0/0", error="x" * 5000
    )
    assert codec.header_texts(record.headers)[HEADER_DLQ_ERROR] == "x" * codec.MAX_DLQ_ERROR_BYTES
    assert codec.decode_dead_letter(None, None, record.headers).key is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (None, "do not end with"),
        ([(HEADER_DLQ_ERROR, b"e")], "do not end with"),
        ([(HEADER_DLQ_SOURCE, b"t/0/1"), (HEADER_DLQ_ERROR, b"e")], "do not end with"),
        ([(HEADER_DLQ_ERROR, b"e"), (HEADER_DLQ_SOURCE, b"t-0-1")], "not topic/partition/offset"),
        ([(HEADER_DLQ_ERROR, b"e"), (HEADER_DLQ_SOURCE, b"t/x/1")], "not topic/partition/offset"),
    ],
)
def test_a_dead_letter_without_both_dlq_headers_is_undecodable(headers: Any, reason: str) -> None:
    with pytest.raises(codec.Undecodable, match=reason):
        codec.decode_dead_letter(b"k", b"v", headers)


# -- what is refused --------------------------------------------------------------------------


def test_a_record_without_a_message_type_header_is_read_as_the_topics_type() -> None:
    assert codec.decode_result(result().SerializeToString(), None) == result()
    assert codec.decode_event(event().SerializeToString(), []) == event()
    assert codec.decode_snapshot(b"pr-1", snapshot().SerializeToString(), {}) == snapshot()
    envelope = approve()
    assert codec.decode_command(b"pr-1", envelope.SerializeToString(), None) == envelope


@pytest.mark.parametrize(
    ("decode", "value"),
    [
        (lambda v, h: codec.decode_command(b"pr-1", v, h), approve().SerializeToString()),
        (codec.decode_event, event().SerializeToString()),
        (lambda v, h: codec.decode_snapshot(b"pr-1", v, h), snapshot().SerializeToString()),
        (lambda v, h: codec.decode_snapshot(b"pr-1", None, h), None),  # a tombstone too
        (codec.decode_result, result().SerializeToString()),
    ],
    ids=["command", "event", "snapshot", "tombstone", "result"],
)
@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "str"])
def test_a_record_of_another_message_type_is_refused(
    decode: Any, value: bytes | None, as_bytes: bool
) -> None:
    other = "prgate.v1.SomethingElse"
    headers = [(HEADER_MESSAGE_TYPE, other.encode() if as_bytes else other)]
    with pytest.raises(codec.Undecodable, match=re.escape(f"message-type {other!r} is not")):
        decode(value, headers)


@pytest.mark.parametrize(
    "decode",
    [
        lambda v: codec.decode_command(b"pr-1", v, None),
        lambda v: codec.decode_event(v, None),
        lambda v: codec.decode_snapshot(b"pr-1", v, None),
        lambda v: codec.decode_result(v, None),
    ],
    ids=["command", "event", "snapshot", "result"],
)
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xff garbage", "not a protobuf"),
        (b"", "empty value"),
        # Parses, but lacks the id every value of the topic has.
        (b"\x90\x03\x01", "no "),
    ],
    ids=["garbage", "empty", "no-id"],
)
def test_garbage_empty_values_and_values_without_their_id_are_undecodable(
    decode: Any, value: bytes, reason: str
) -> None:
    with pytest.raises(codec.Undecodable, match=reason):
        decode(value)


@pytest.mark.parametrize("decode", [codec.decode_event, codec.decode_result])
def test_a_null_value_is_no_event_and_no_result(decode: Any) -> None:
    with pytest.raises(codec.Undecodable, match="empty value"):
        decode(None, None)


def test_a_tombstone_is_none_with_its_key_and_undecodable_without() -> None:
    assert codec.decode_snapshot(b"pr-1", None, None) is None
    with pytest.raises(codec.Undecodable, match="tombstone without key"):
        codec.decode_snapshot(None, None, None)
    with pytest.raises(codec.Undecodable, match="tombstone without key"):
        codec.decode_snapshot(b"", None, None)


def test_a_snapshot_under_another_key_is_refused_and_one_without_a_key_accepted() -> None:
    value = snapshot().SerializeToString()
    with pytest.raises(codec.Undecodable, match="key differs from id 'pr-1'"):
        codec.decode_snapshot(b"pr-2", value, None)
    assert codec.decode_snapshot(None, value, None) == snapshot()


@pytest.mark.parametrize(
    ("key", "envelope", "reason", "partial"),
    [
        (b"pr-1", commands_pb2.CommandEnvelope(pull_request_id="pr-1"), "no command_id", False),
        (
            b"pr-1",
            commands_pb2.CommandEnvelope(command_id=C1, pull_request_id="pr-1"),
            "names no command",
            True,
        ),
        (
            b"pr-1",
            commands_pb2.CommandEnvelope(
                command_id=C1,
                merge_pull_request=commands_pb2.MergePullRequest(merged_by_user="bob"),
            ),
            "names no pull_request_id",
            True,
        ),
        (None, approve(), "record has no key; it must be the pull request id 'pr-1'", True),
        (b"pr-2", approve(), "record key 'pr-2' is not the pull request id 'pr-1'", True),
        (
            b"pr-2",
            approve(pr="pr-2", command_id=C1),
            "COMMAND_ID_NOT_BOUND: command id .* is not bound to the pull request id 'pr-2'",
            True,
        ),
        (
            b"pr-1",
            approve(command_id="c-1"),
            "COMMAND_ID_NOT_BOUND: command id 'c-1' is not bound",
            True,
        ),
    ],
    ids=[
        "no-command-id",
        "no-command",
        "no-pull-request",
        "no-key",
        "other-key",
        "id-of-another-pull-request",
        "id-without-tag",
    ],
)
def test_an_unusable_command_says_why_and_keeps_what_could_be_read(
    key: bytes | None, envelope: commands_pb2.CommandEnvelope, reason: str, partial: bool
) -> None:
    with pytest.raises(codec.UndecodableCommand, match=reason) as raised:
        codec.decode_command(key, envelope.SerializeToString(), None)
    assert raised.value.envelope == (envelope if partial else None)


def test_a_command_that_fails_to_parse_is_an_undecodable_command_without_envelope() -> None:
    with pytest.raises(codec.UndecodableCommand, match="not a protobuf CommandEnvelope") as raised:
        codec.decode_command(b"pr-1", b"\xff\xff", None)
    assert raised.value.envelope is None
    with pytest.raises(
        codec.UndecodableCommand, match=re.escape(f"is not {TYPE_COMMAND_ENVELOPE}")
    ):
        codec.decode_command(b"pr-1", b"x", [(HEADER_MESSAGE_TYPE, TYPE_EVENT_ENVELOPE)])


def test_the_command_key_is_the_commands_own_pull_request_id() -> None:
    """The envelope's id is the fallback; a command naming its pull request wins."""
    envelope = approve(pr="pr-1")
    envelope.pull_request_id = ""
    assert codec.decode_command(b"pr-1", envelope.SerializeToString(), None) == envelope


def test_the_codec_loads_neither_kafka_nor_the_services() -> None:
    """The codec is plain data in and out: importing it loads no confluent_kafka, and nothing of
    gateway, processor or the CLI (the import rules themselves are checked on the AST)."""
    probe = (
        "import sys, prgate.kafka.codec\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'confluent_kafka', 'gateway', 'processor', 'grpc'}), "
        "sorted(m for m in sys.modules if m.startswith('prgate.cli')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[] []"


def refusal(pr: str = "pr-1") -> refusals_pb2.CommandRefusal:
    return refusals_pb2.CommandRefusal(
        command=approve(pr=pr), code=9, code_name="FAILED_PRECONDITION", reason="SELF_APPROVAL"
    )


def test_a_refusal_round_trips_keyed_by_its_pull_request() -> None:
    record = codec.refusal_record(TOPICS.refusals, refusal(), TRACEPARENT)

    assert (record.topic, record.key) == (TOPICS.refusals, b"pr-1")
    assert codec.header_texts(record.headers) == {
        HEADER_MESSAGE_TYPE: TYPE_COMMAND_REFUSAL,
        HEADER_CORRELATION_ID: C1,
        HEADER_TRACEPARENT: TRACEPARENT,
    }
    assert codec.decode_refusal(record.value, as_consumed(record.headers)) == refusal()


def test_a_refusal_without_a_pull_request_has_no_key() -> None:
    assert codec.refusal_record(TOPICS.refusals, refusal(pr="")).key is None


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (None, None, "empty value"),
        (b"\xff\xff", None, "not a protobuf CommandRefusal"),
        (refusals_pb2.CommandRefusal(code=3).SerializeToString(), None, "no command.command_id"),
        (b"", [(HEADER_MESSAGE_TYPE, TYPE_COMMAND_RESULT.encode())], "is not"),
    ],
)
def test_an_unusable_refusal_is_undecodable(value: bytes | None, headers: Any, reason: str) -> None:
    with pytest.raises(codec.Undecodable, match=reason):
        codec.decode_refusal(value, headers)
