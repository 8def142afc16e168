"""The processor's per-command logic, its staged state and reply-to resolution, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, KafkaException, Message
from helpers.ids import bound_id

from prgate.domain import Policy
from prgate.kafka import codec
from prgate.kafka.codec import Record
from prgate.kafka.contract import (
    HEADER_CORRELATION_ID,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_SOURCE,
    HEADER_MESSAGE_TYPE,
    HEADER_TRACEPARENT,
    TYPE_COMMAND_RESULT,
    TYPE_EVENT_ENVELOPE,
    TYPE_PULL_REQUEST,
    Topics,
)
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
from processor.handler import CommandHandler, Outcome
from processor.reply_topics import ReplyTopics
from processor.settings import ProcessorSettings
from processor.state_store import MemoryPartition, PartitionStates

TOPICS = Topics("u.")
ACCEPTED_AT_MS = 1_750_000_000_000
COMPLETED = datetime(2030, 1, 1, tzinfo=UTC)


def handler() -> CommandHandler:
    return CommandHandler(TOPICS, Policy(), clock=lambda: COMPLETED)


def store() -> PartitionStates:
    states = PartitionStates()
    states.put_partition(0, MemoryPartition({}))
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
        # As the gateway produces it.
        sent = codec.command_record(
            TOPICS.commands, env, reply_to=TOPICS.results, traceparent="00-abc-def-01"
        )
        value = sent.value
        key = key or sent.key
        if headers is None:
            headers = sent.headers
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
    """An OpenPullRequest whose id is the bound id named ``command_id`` (see :func:`cid`)."""
    env = CommandEnvelope(command_id=cid(command_id, pr), pull_request_id=pr)
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
    env = CommandEnvelope(command_id=cid(command_id, pr), pull_request_id=pr)
    env.approve_pull_request.CopyFrom(
        commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer=reviewer)
    )
    return env


def cid(name: str, pr: str = "pr-1") -> str:
    """The command id named ``name`` on ``pr``, bound to it as the gateway makes ids."""
    return bound_id(name, pr)


def by_topic(out: list[Record], topic: str) -> list[Record]:
    return [o for o in out if o.topic == topic]


def result_of(out: list[Record]) -> CommandResult:
    (record,) = by_topic(out, TOPICS.results)
    return codec.decode_result(record.value, record.headers)


def headers(record: Record) -> dict[str, Any]:
    return dict(record.headers)


def test_accepted_command_writes_events_snapshot_and_result_with_headers() -> None:
    states = store()
    staged = states.begin()
    handled = handler().handle(message(open_env()), staged)
    assert handled.outcome is Outcome.SUCCEEDED
    (event_rec,) = by_topic(handled.outgoing, TOPICS.events)
    (snap_rec,) = by_topic(handled.outgoing, TOPICS.pull_requests)
    event = EventEnvelope.FromString(event_rec.value or b"")
    assert event.version == 1 and event.command_id == cid("c-open")
    assert event.occurred_at.ToDatetime(tzinfo=UTC).timestamp() * 1000 == ACCEPTED_AT_MS
    assert event_rec.key == b"pr-1" and snap_rec.key == b"pr-1"
    assert headers(event_rec)[HEADER_MESSAGE_TYPE] == TYPE_EVENT_ENVELOPE.encode()
    assert headers(snap_rec)[HEADER_MESSAGE_TYPE] == TYPE_PULL_REQUEST.encode()
    assert headers(event_rec)[HEADER_TRACEPARENT] == b"00-abc-def-01"
    snapshot = PullRequest.FromString(snap_rec.value or b"")
    assert snapshot.version == 1
    assert [p.command_id for p in snapshot.recent_commands] == [cid("c-open")]
    result = result_of(handled.outgoing)
    (result_rec,) = by_topic(handled.outgoing, TOPICS.results)
    assert result_rec.key == cid("c-open").encode()
    assert headers(result_rec)[HEADER_CORRELATION_ID] == cid("c-open").encode()
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


C9 = bound_id("c-9", "pr-1")


@pytest.mark.parametrize(
    ("value", "key", "extra_headers", "error", "answered"),
    [
        (b"\xff\xff garbage", b"pr-1", [], "not a protobuf CommandEnvelope", True),
        (None, b"pr-1", [], "empty value", True),
        (
            CommandEnvelope(command_id=C9, pull_request_id="pr-1").SerializeToString(),
            b"pr-1",
            [],
            "names no command",
            True,
        ),
        # On another pull request's partition: the id may have its result where pr-1 lives.
        (open_env("c-9").SerializeToString(), b"other", [], "is not the pull request id", False),
        (
            open_env("c-9").SerializeToString(),
            b"pr-1",
            [(HEADER_MESSAGE_TYPE, b"prgate.v1.PullRequest")],
            "is not prgate.v1.CommandEnvelope",
            True,
        ),
    ],
)
def test_unusable_records_are_dead_lettered_as_received(
    value: bytes | None,
    key: bytes,
    extra_headers: list[tuple[str, bytes]],
    error: str,
    answered: bool,
) -> None:
    sent_headers = [(HEADER_CORRELATION_ID, C9.encode()), ("x-mine", None), *extra_headers]
    handled = handler().handle(
        message(value=value, key=key, headers=sent_headers, offset=7), store().begin()
    )
    assert handled.outcome is Outcome.DEAD_LETTER
    (dead,) = by_topic(handled.outgoing, TOPICS.dlq)
    assert (dead.key, dead.value) == (key, value)
    assert dead.headers[: len(sent_headers)] == sent_headers  # as received, incl. null values
    assert error in (headers(dead)[HEADER_DLQ_ERROR] or b"").decode()
    assert headers(dead)[HEADER_DLQ_SOURCE] == f"{TOPICS.commands}/0/7".encode()
    if not answered:
        assert not by_topic(handled.outgoing, TOPICS.results)
        return
    result = result_of(handled.outgoing)
    assert result.state == COMMAND_STATE_FAILED and result.command_id == C9
    assert error in result.error_message


@pytest.mark.parametrize(
    ("correlation_id", "key"),
    [
        ("c-9", b"pr-1"),  # not a bound id at all
        (bound_id("c-9", "pr-2"), b"pr-1"),  # bound to another pull request
    ],
    ids=["unbound", "bound-elsewhere"],
)
def test_a_dead_letter_never_answers_an_id_of_another_pull_request(
    correlation_id: str, key: bytes
) -> None:
    handled = handler().handle(
        message(value=b"\xff junk", key=key, headers=[(HEADER_CORRELATION_ID, correlation_id)]),
        store().begin(),
    )
    assert handled.outcome is Outcome.DEAD_LETTER
    assert [o.topic for o in handled.outgoing] == [TOPICS.dlq]


def test_a_copy_of_a_handled_command_id_for_another_pull_request_is_dead_lettered() -> None:
    """Issue 12's case: command id X was used for pr-1; X sent again for pr-2 is no command
    and gets no second result."""
    states = store()
    staged = states.begin()
    h = handler()
    h.handle(message(open_env()), staged)
    first = h.handle(message(approve_env("x", "bob")), staged)
    assert first.outcome is Outcome.SUCCEEDED
    h.handle(message(open_env("c-open-2", pr="pr-2"), offset=2), staged)
    copy = approve_env("x", "bob", pr="pr-2")
    copy.command_id = cid("x")  # the id of pr-1's approve
    again = h.handle(message(copy, offset=3), staged)
    assert again.outcome is Outcome.DEAD_LETTER
    assert [o.topic for o in again.outgoing] == [TOPICS.dlq]
    (dead,) = again.outgoing
    assert b"COMMAND_ID_NOT_BOUND" in (headers(dead)[HEADER_DLQ_ERROR] or b"")
    assert staged.get(0, "pr-2") is not None and staged.get(0, "pr-2").version == 1


def test_a_garbage_copy_of_a_handled_command_id_gets_no_second_result() -> None:
    states = store()
    staged = states.begin()
    h = handler()
    h.handle(message(open_env()), staged)
    garbage = message(
        value=b"\xff junk", key=b"pr-1", headers=[(HEADER_CORRELATION_ID, cid("c-open"))]
    )
    handled = h.handle(garbage, staged)
    assert [o.topic for o in handled.outgoing] == [TOPICS.dlq]


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

    reply = ReplyTopics(TOPICS, list_topics, allowed=["u.inbox", "u.missing", "u.flaky"])
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


def retitle_env(name: str, title: str, pr: str = "pr-1") -> CommandEnvelope:
    env = CommandEnvelope(command_id=cid(name, pr), pull_request_id=pr)
    env.change_pull_request_title.CopyFrom(
        commands_pb2.ChangePullRequestTitle(pull_request_id=pr, title=title, changed_by="u")
    )
    return env


def test_the_redelivery_window_is_the_last_commands_of_the_pull_request() -> None:
    """What README "Not promised" states: an id is answered as a redelivery while it is among
    its pull request's last ``recent_commands_kept`` commands; after that it is decided again."""
    h = CommandHandler(TOPICS, Policy(recent_commands_kept=2), clock=lambda: COMPLETED)
    staged = store().begin()
    h.handle(message(open_env()), staged)
    assert h.handle(message(retitle_env("t", "A")), staged).outcome is Outcome.SUCCEEDED
    again = h.handle(message(retitle_env("t", "A")), staged)
    assert again.outcome is Outcome.DUPLICATE and result_of(again.outgoing).duplicate
    h.handle(message(retitle_env("t2", "B")), staged)
    h.handle(message(retitle_env("t3", "C")), staged)  # "t" leaves the window of two
    late = h.handle(message(retitle_env("t", "A")), staged)
    assert late.outcome is Outcome.SUCCEEDED and not result_of(late.outgoing).duplicate
    assert staged.get(0, "pr-1") is not None and staged.get(0, "pr-1").title == "A"
