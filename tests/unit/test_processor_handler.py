"""The processor's per-command logic, its staged state and reply-to resolution, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, KafkaException, Message

from prgate.v1 import commands_pb2
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.outcome_pb2 import (
    COMMAND_STATE_FAILED,
    COMMAND_STATE_REJECTED,
    COMMAND_STATE_SUCCEEDED,
)
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from processor.contract import (
    HEADER_CORRELATION_ID,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_SOURCE,
    HEADER_MESSAGE_TYPE,
    HEADER_REPLY_TO,
    HEADER_TRACEPARENT,
    TYPE_COMMAND_RESULT,
    TYPE_EVENT_ENVELOPE,
    TYPE_PULL_REQUEST,
    Topics,
)
from processor.domain import Policy
from processor.handler import CommandHandler, Outcome
from processor.records import Outgoing
from processor.reply_topics import ReplyTopics
from processor.settings import ProcessorSettings
from processor.state_store import PartitionStates

TOPICS = Topics("u.")
ACCEPTED_AT_MS = 1_750_000_000_000
COMPLETED = datetime(2030, 1, 1, tzinfo=UTC)


def handler() -> CommandHandler:
    return CommandHandler(TOPICS, Policy(), clock=lambda: COMPLETED)


def store() -> PartitionStates:
    states = PartitionStates()
    states.put_partition(0, {})
    return states


def message(
    env: CommandEnvelope | None = None,
    *,
    value: bytes | None = None,
    key: bytes | None = None,
    headers: list[tuple[str, Any]] | None = None,
    offset: int = 0,
) -> Message:
    if env is not None:
        value = env.SerializeToString()
        key = key or env.pull_request_id.encode()
        if headers is None:
            headers = [
                (HEADER_CORRELATION_ID, env.command_id.encode()),
                (HEADER_REPLY_TO, TOPICS.results.encode()),
                (HEADER_MESSAGE_TYPE, b"prgate.v1.CommandEnvelope"),
                (HEADER_TRACEPARENT, b"00-abc-def-01"),
            ]
    return Message(
        topic=TOPICS.commands,
        partition=0,
        offset=offset,
        key=key,
        value=value,
        headers=headers or [],
        timestamp=(TIMESTAMP_CREATE_TIME, ACCEPTED_AT_MS),
    )


def open_env(command_id: str = "c-open", pr: str = "pr-1") -> CommandEnvelope:
    env = CommandEnvelope(command_id=command_id, pull_request_id=pr)
    env.open_pull_request.CopyFrom(
        commands_pb2.OpenPullRequest(
            repository="acme/w",
            title="T",
            author="alice",
            source_branch="f",
            target_branch="main",
        )
    )
    return env


def approve_env(command_id: str, reviewer: str, pr: str = "pr-1") -> CommandEnvelope:
    env = CommandEnvelope(command_id=command_id, pull_request_id=pr)
    env.approve_pull_request.CopyFrom(
        commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer=reviewer)
    )
    return env


def by_topic(out: list[Outgoing], topic: str) -> list[Outgoing]:
    return [o for o in out if o.topic == topic]


def result_of(out: list[Outgoing]) -> CommandResult:
    (record,) = by_topic(out, TOPICS.results)
    result = CommandResult()
    result.ParseFromString(record.value or b"")
    return result


def headers(record: Outgoing) -> dict[str, Any]:
    return dict(record.headers)


def test_accepted_command_writes_events_snapshot_and_result_with_headers() -> None:
    states = store()
    staged = states.begin()
    handled = handler().handle(message(open_env()), staged)
    assert handled.outcome is Outcome.SUCCEEDED
    (event_rec,) = by_topic(handled.outgoing, TOPICS.events)
    (snap_rec,) = by_topic(handled.outgoing, TOPICS.pull_requests)
    event = EventEnvelope.FromString(event_rec.value or b"")
    assert event.version == 1 and event.command_id == "c-open"
    assert event.occurred_at.ToDatetime(tzinfo=UTC).timestamp() * 1000 == ACCEPTED_AT_MS
    assert event_rec.key == b"pr-1" and snap_rec.key == b"pr-1"
    assert headers(event_rec)[HEADER_MESSAGE_TYPE] == TYPE_EVENT_ENVELOPE.encode()
    assert headers(snap_rec)[HEADER_MESSAGE_TYPE] == TYPE_PULL_REQUEST.encode()
    assert headers(event_rec)[HEADER_TRACEPARENT] == b"00-abc-def-01"
    snapshot = PullRequest.FromString(snap_rec.value or b"")
    assert snapshot.version == 1
    assert [p.command_id for p in snapshot.recent_commands] == ["c-open"]
    result = result_of(handled.outgoing)
    (result_rec,) = by_topic(handled.outgoing, TOPICS.results)
    assert result_rec.key == b"c-open"
    assert headers(result_rec)[HEADER_CORRELATION_ID] == b"c-open"
    assert headers(result_rec)[HEADER_MESSAGE_TYPE] == TYPE_COMMAND_RESULT.encode()
    assert result.state == COMMAND_STATE_SUCCEEDED and list(result.events) == [event]
    assert result.command_type == "OpenPullRequest"
    # Staged, not committed, until apply().
    assert states.get(0, "pr-1") is None and staged.get(0, "pr-1") == snapshot
    staged.apply()
    assert states.get(0, "pr-1") == snapshot


def test_reprocessing_a_record_writes_identical_events() -> None:
    """After an abort the batch is redone: same record time, same event bytes."""
    first = handler().handle(message(open_env()), store().begin())
    again = handler().handle(message(open_env()), store().begin())
    assert by_topic(first.outgoing, TOPICS.events) == by_topic(again.outgoing, TOPICS.events)


def test_redelivered_command_gets_original_result_and_no_events() -> None:
    states = store()
    staged = states.begin()
    h = handler()
    h.handle(message(open_env()), staged)
    h.handle(message(approve_env("c-2", "bob")), staged)
    again = h.handle(message(approve_env("c-2", "bob"), offset=2), staged)
    assert again.outcome is Outcome.DUPLICATE
    (only,) = again.outgoing
    result = result_of(again.outgoing)
    assert result.duplicate and result.state == COMMAND_STATE_SUCCEEDED
    assert result.version == 2 and not result.events
    assert only.topic == TOPICS.results


def test_rejection_is_remembered_in_the_snapshot_without_a_new_version() -> None:
    staged = store().begin()
    h = handler()
    h.handle(message(open_env()), staged)
    handled = h.handle(message(approve_env("c-self", "alice")), staged)
    assert handled.outcome is Outcome.REJECTED
    assert not by_topic(handled.outgoing, TOPICS.events)
    (snap_rec,) = by_topic(handled.outgoing, TOPICS.pull_requests)
    snapshot = PullRequest.FromString(snap_rec.value or b"")
    assert snapshot.version == 1
    assert snapshot.recent_commands[-1].state == COMMAND_STATE_REJECTED
    result = result_of(handled.outgoing)
    assert result.state == COMMAND_STATE_REJECTED
    assert [v.reason for v in result.violations] == ["SELF_APPROVAL"]


def test_command_on_missing_pull_request_is_rejected_without_a_snapshot() -> None:
    handled = handler().handle(message(approve_env("c-x", "bob", pr="nope")), store().begin())
    assert handled.outcome is Outcome.REJECTED
    assert [o.topic for o in handled.outgoing] == [TOPICS.results]


@pytest.mark.parametrize(
    ("value", "key", "extra_headers", "error"),
    [
        (b"\xff\xff garbage", b"pr-1", [], "not a protobuf CommandEnvelope"),
        (None, b"pr-1", [], "empty value"),
        (
            CommandEnvelope(command_id="c-9", pull_request_id="pr-1").SerializeToString(),
            b"pr-1",
            [],
            "names no command",
        ),
        (open_env("c-9").SerializeToString(), b"other", [], "is not the pull request id"),
        (
            open_env("c-9").SerializeToString(),
            b"pr-1",
            [(HEADER_MESSAGE_TYPE, b"prgate.v1.PullRequest")],
            "is not prgate.v1.CommandEnvelope",
        ),
    ],
)
def test_unusable_records_are_dead_lettered_as_received(
    value: bytes | None, key: bytes, extra_headers: list[tuple[str, bytes]], error: str
) -> None:
    sent_headers = [(HEADER_CORRELATION_ID, b"c-9"), ("x-mine", None), *extra_headers]
    handled = handler().handle(
        message(value=value, key=key, headers=sent_headers, offset=7), store().begin()
    )
    assert handled.outcome is Outcome.DEAD_LETTER
    (dead,) = by_topic(handled.outgoing, TOPICS.dlq)
    assert (dead.key, dead.value) == (key, value)
    assert dead.headers[: len(sent_headers)] == sent_headers  # as received, incl. null values
    assert error in (headers(dead)[HEADER_DLQ_ERROR] or b"").decode()
    assert headers(dead)[HEADER_DLQ_SOURCE] == f"{TOPICS.commands}/0/7".encode()
    result = result_of(handled.outgoing)
    assert result.state == COMMAND_STATE_FAILED and result.command_id == "c-9"
    assert error in result.error_message


def test_dead_letter_without_any_command_id_gets_no_result() -> None:
    handled = handler().handle(message(value=b"\x00junk", key=None, headers=[]), store().begin())
    assert [o.topic for o in handled.outgoing] == [TOPICS.dlq]


def test_staged_changes_of_a_revoked_partition_are_dropped() -> None:
    states = store()
    staged = states.begin()
    handler().handle(message(open_env()), staged)
    states.drop([0])
    staged.apply()
    assert not states.owns(0) and states.get(0, "pr-1") is None


def test_reply_topics_fall_back_for_contract_missing_and_unreachable_topics() -> None:
    calls: list[str] = []
    present = {"u.inbox"}

    def list_topics(topic: str, timeout: float) -> Any:
        calls.append(topic)
        if topic == "u.flaky":
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "down"))
        error = None if topic in present else KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
        meta = SimpleNamespace(error=error, partitions={0: object()} if error is None else {})
        return SimpleNamespace(topics={topic: meta})

    reply = ReplyTopics(TOPICS, list_topics)
    assert reply(None) == TOPICS.results
    assert reply("u.inbox") == "u.inbox"
    assert reply("u.inbox") == "u.inbox"
    assert reply(TOPICS.events) == TOPICS.results
    assert reply("u.missing") == TOPICS.results
    assert reply("u.missing") == TOPICS.results
    assert reply("u.flaky") == TOPICS.results
    assert reply("u.flaky") == TOPICS.results
    # Cached: one lookup per name, except after a failed lookup.
    assert calls == ["u.inbox", "u.missing", "u.flaky", "u.flaky"]


def test_settings_derive_stable_transactional_id_and_safe_client_configs() -> None:
    settings = ProcessorSettings(topic_prefix="x.", instance_id="proc-0")
    assert settings.transactional_id(settings.resolved_instance_id) == "x.processor-proc-0"
    consumer = settings.consumer_config("proc-0")
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    producer = settings.producer_config("proc-0")
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    assert producer["transaction.timeout.ms"] == 10_000
    assert ProcessorSettings().resolved_instance_id  # hostname-pid by default
    with pytest.raises(ValueError, match="batch_max_records"):
        ProcessorSettings(batch_max_records=0)
    with pytest.raises(ValueError):
        ProcessorSettings(required_approvals=-1)
