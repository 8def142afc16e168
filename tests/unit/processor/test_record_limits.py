"""Records checked against the topics' limits before they are produced, and what the loop
remembers when Kafka refuses one all the same (processor/record_limits.py,
processor/record_failures.py, the codec's record_size and DLQ cut)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, Message
from helpers.ids import bound_id

from prgate.domain import Policy
from prgate.kafka import codec
from prgate.kafka.contract import HEADER_DLQ_ORIGINAL_SIZE, Topics
from prgate.v1 import commands_pb2
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.outcome_pb2 import (
    COMMAND_STATE_FAILED,
    COMMAND_STATE_REJECTED,
    COMMAND_STATE_SUCCEEDED,
    VIOLATION_KIND_FAILED_PRECONDITION,
)
from prgate.v1.pull_request_pb2 import PULL_REQUEST_STATUS_OPEN, PullRequest
from prgate.v1.results_pb2 import CommandResult
from processor.handler import CommandHandler, Outcome
from processor.record_failures import RecordFailures, Refusal
from processor.record_limits import RecordFailure, RecordLimits, record_error_name
from processor.reply_topics import Reply, ReplyTopics
from processor.state_store import MemoryPartition, PartitionStates

TOPICS = Topics("u.")
COMPLETED = datetime(2030, 1, 1, tzinfo=UTC)


def record(topic: str, value: bytes, key: bytes = b"k") -> codec.Record:
    return codec.Record(topic, key, value, [("h", b"v")])


# -- sizes ------------------------------------------------------------------------------------


def test_record_size_bounds_what_the_broker_and_librdkafka_count() -> None:
    small = record("t", b"x" * 10)
    big = record("t", b"x" * 1010)
    assert codec.record_size(big) - codec.record_size(small) == 1000
    # librdkafka counts key + value + headers; the broker the batch around the record too.
    assert codec.record_size(small) >= 1 + 10 + 1 + 1 + codec.BATCH_OVERHEAD


def test_limits_take_the_smaller_of_topic_and_producer_and_describe_once() -> None:
    described: list[str] = []

    def describe(topic: str) -> int | None:
        described.append(topic)
        return {"reply": 500}.get(topic)

    limits = RecordLimits({"snapshots": 3000}, producer_max=2000, describe=describe)
    assert limits.limit("snapshots") == 2000
    assert limits.limit("reply") == 500 and limits.limit("reply") == 500
    assert limits.limit("unknown") == 2000 and limits.limit("unknown") == 2000
    assert described == ["reply", "unknown"]
    assert limits.fits(record("reply", b"x" * 300))
    assert not limits.fits(record("reply", b"x" * 500))


def test_a_refused_record_teaches_the_limit() -> None:
    limits = RecordLimits({"t": 1_000_000}, describe=lambda topic: 3000)
    # Too large on its own: the limit drops to the topic's new one.
    assert limits.learn("t", 3500, batched_up_to=1_000_000) is False
    assert limits.limit("t") == 3000
    # It would fit alone: only the batch it was in was too large.
    assert limits.learn("t", 2000, batched_up_to=1_000_000) is True
    assert limits.batch_size(["t"]) == 3000 - codec.BATCH_OVERHEAD
    # Kafka refused what describe says fits: believe Kafka.
    blind = RecordLimits({"t": 1_000_000}, describe=lambda topic: None)
    assert blind.learn("t", 5000, batched_up_to=1_000_000) is False
    assert blind.limit("t") == 4999


def test_per_record_errors_are_told_apart_from_kafka_being_away() -> None:
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    assert record_error_name(too_large) == "MSG_SIZE_TOO_LARGE"
    assert record_error_name(denied) is None  # on a contract topic: the deployment's problem
    assert record_error_name(denied, reply_topic=True) == "TOPIC_AUTHORIZATION_FAILED"
    assert record_error_name(KafkaError(KafkaError._MSG_TIMED_OUT), reply_topic=True) is None
    assert record_error_name(KafkaError(KafkaError._TRANSPORT)) is None


# -- the DLQ copy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "headers", "key"),
    [
        (b"v" * 10_000, [("x-mine", b"kept")], b"pr-1"),
        (b"v" * 100, [("x-huge", b"h" * 10_000)], b"pr-1"),
        (b"v", [], b"k" * 10_000),
    ],
    ids=["value", "headers", "key"],
)
def test_a_dead_letter_that_would_not_fit_is_cut_and_says_how_large_it_was(
    value: bytes, headers: list[tuple[str, bytes]], key: bytes
) -> None:
    letter = codec.dead_letter_record(
        "dlq", key, value, headers, source="c/0/7", error="why", max_bytes=4000
    )
    assert codec.record_size(letter) <= 4000
    assert letter.headers[-1][0] == HEADER_DLQ_ORIGINAL_SIZE
    decoded = codec.decode_dead_letter(letter.key, letter.value, letter.headers)
    uncut = codec.dead_letter_record("dlq", key, value, headers, source="c/0/7", error="why")
    assert decoded.original_size == codec.record_size(uncut) > 4000
    assert decoded.error == "why" and decoded.source_offset == 7
    assert value.startswith(decoded.value or b"") and key.startswith(decoded.key or b"")


def test_a_dead_letter_that_fits_is_not_cut() -> None:
    letter = codec.dead_letter_record(
        "dlq", b"k", b"v", [], source="c/0/1", error="why", max_bytes=4000
    )
    decoded = codec.decode_dead_letter(letter.key, letter.value, letter.headers)
    assert decoded.original_size is None and decoded.value == b"v"


# -- the handler's last guard -----------------------------------------------------------------


def message(env: CommandEnvelope, offset: int = 0) -> Message:
    sent = codec.command_record(TOPICS.commands, env, reply_to=TOPICS.results)
    return Message(
        topic=TOPICS.commands,
        partition=0,
        offset=offset,
        key=sent.key,
        value=sent.value,
        headers=sent.headers,
        timestamp=(TIMESTAMP_CREATE_TIME, 1_750_000_000_000),
    )


def open_env(name: str, description: str) -> CommandEnvelope:
    env = CommandEnvelope(command_id=bound_id(name, "pr-1"), pull_request_id="pr-1")
    env.open_pull_request.CopyFrom(
        commands_pb2.OpenPullRequest(
            repository="acme/w",
            title="T",
            description=description,
            author="alice",
            source_branch="f",
            target_branch="main",
        )
    )
    return env


def title_env(name: str, title: str) -> CommandEnvelope:
    env = CommandEnvelope(command_id=bound_id(name, "pr-1"), pull_request_id="pr-1")
    env.change_pull_request_title.CopyFrom(
        commands_pb2.ChangePullRequestTitle(pull_request_id="pr-1", title=title, changed_by="a")
    )
    return env


def handler(limit: int) -> CommandHandler:
    limits = RecordLimits({TOPICS.pull_requests: limit, TOPICS.dlq: 2000})
    return CommandHandler(TOPICS, Policy(), clock=lambda: COMPLETED, limits=limits)


def staged_store() -> PartitionStates:
    states = PartitionStates()
    states.put_partition(0, MemoryPartition({}))
    return states


def result_of(out: list[codec.Record]) -> CommandResult:
    (reply,) = [r for r in out if r.topic == TOPICS.results]
    return codec.decode_result(reply.value, reply.headers)


def test_a_command_whose_snapshot_would_not_fit_is_rejected_and_remembered() -> None:
    staged = staged_store().begin()
    limits = RecordLimits({TOPICS.dlq: 2000})
    h = CommandHandler(TOPICS, Policy(), clock=lambda: COMPLETED, limits=limits)
    opened = h.handle(message(open_env("open", "d" * 800)), staged)
    assert opened.outcome is Outcome.SUCCEEDED
    (snapshot,) = [r for r in opened.outgoing if r.topic == TOPICS.pull_requests]
    # Room for the next command's bookkeeping, not for a 200-character title on top.
    limits.update({TOPICS.pull_requests: codec.record_size(snapshot) + 300})
    handled = h.handle(message(title_env("long", "t" * 250), offset=1), staged)
    assert handled.outcome is Outcome.REJECTED and handled.events == 0
    assert not [r for r in handled.outgoing if r.topic == TOPICS.events]
    result = result_of(handled.outgoing)
    assert result.state == COMMAND_STATE_REJECTED and result.version == 1
    (violation,) = result.violations
    assert violation.reason == "SNAPSHOT_TOO_LARGE"
    assert violation.kind == VIOLATION_KIND_FAILED_PRECONDITION
    after = staged.get(0, "pr-1")
    assert after is not None and after.title == "T" and after.version == 1
    assert after.recent_commands[-1].command_id == bound_id("long", "pr-1")
    # Redelivered: the rejection is answered again, not decided again.
    again = h.handle(message(title_env("long", "t" * 250), offset=2), staged)
    assert again.outcome is Outcome.DUPLICATE


def test_an_open_too_large_is_rejected_without_a_snapshot() -> None:
    staged = staged_store().begin()
    handled = handler(limit=1500).handle(message(open_env("big", "d" * 2000)), staged)
    assert handled.outcome is Outcome.REJECTED
    assert [r.topic for r in handled.outgoing] == [TOPICS.results]
    assert staged.get(0, "pr-1") is None


def test_a_rejection_whose_snapshot_would_not_fit_leaves_the_state_alone() -> None:
    states = staged_store()
    full = PullRequest(
        pull_request_id="pr-1",
        title="T",
        description="d" * 1300,
        version=1,
        status=PULL_REQUEST_STATUS_OPEN,
    )
    states.put_partition(0, MemoryPartition({"pr-1": full}))
    staged = states.begin()
    handled = handler(limit=1500).handle(message(title_env("t", "")), staged)
    assert handled.outcome is Outcome.REJECTED
    assert [r.topic for r in handled.outgoing] == [TOPICS.results]
    assert staged.get(0, "pr-1") == full


def test_a_command_kafka_refused_is_answered_failed_with_a_cut_dlq_copy() -> None:
    staged = staged_store().begin()
    failure = RecordFailure("MSG_SIZE_TOO_LARGE", TOPICS.pull_requests, 5000, "too large")
    env = open_env("open", "d" * 3000)
    handled = handler(limit=100_000).handle(message(env), staged, failure)
    assert handled.outcome is Outcome.FAILED and handled.record_error == "MSG_SIZE_TOO_LARGE"
    assert staged.get(0, "pr-1") is None
    result = result_of(handled.outgoing)
    assert result.state == COMMAND_STATE_FAILED
    assert "RECORD_REFUSED" in result.error_message
    (dead,) = [r for r in handled.outgoing if r.topic == TOPICS.dlq]
    assert codec.record_size(dead) <= 2000
    no_copy = handler(limit=100_000).handle(
        message(env), staged_store().begin(), RecordFailure("X", "t", 1, "d", dlq=False)
    )
    assert [r.topic for r in no_copy.outgoing] == [TOPICS.results]


def test_without_limits_nothing_is_checked() -> None:
    h = CommandHandler(TOPICS, Policy(), clock=lambda: COMPLETED)
    handled = h.handle(message(open_env("open", "d" * 5000)), staged_store().begin())
    assert handled.outcome is Outcome.SUCCEEDED
    assert result_of(handled.outgoing).state == COMMAND_STATE_SUCCEEDED


# -- what the loop remembers ------------------------------------------------------------------


def exists(topic: str, timeout: float) -> object:
    """A metadata answer: ``topic`` exists with one partition."""
    return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions={0: 0})})


def failures(describe: int | None = 3000) -> tuple[RecordFailures, ReplyTopics]:
    reply = ReplyTopics(TOPICS, exists, allowed=["u.inbox"])
    limits = RecordLimits({TOPICS.pull_requests: 1_000_000}, describe=lambda topic: describe)
    return RecordFailures(TOPICS, reply, limits), reply


def test_each_refusal_changes_the_redo_at_most_twice_per_command() -> None:
    marks, _reply = failures()
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    snapshot = record(TOPICS.pull_requests, b"x" * 4000)
    assert marks.mark([Refusal((0, 5), snapshot, too_large)])
    failure = marks.get((0, 5))
    assert failure is not None and failure.dlq and failure.topic == TOPICS.pull_requests
    copy = record(TOPICS.dlq, b"x" * 10)
    assert marks.mark([Refusal((0, 5), copy, too_large)])
    failure = marks.get((0, 5))
    assert failure is not None and not failure.dlq
    # Nothing left to change: the refusal is not the record's to fix.
    assert marks.mark([Refusal((0, 5), record(TOPICS.results, b"r"), too_large)]) == []
    marks.committed({0: 6})
    assert marks.get((0, 5)) is None and len(marks) == 0


def test_a_refused_reply_topic_is_given_up_without_failing_the_command() -> None:
    marks, reply = failures()
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    assert reply.resolve("u.inbox") == Reply("u.inbox")
    changes = marks.mark([Refusal((1, 1), record("u.inbox", b"r"), denied)])
    assert changes and marks.get((1, 1)) is None
    assert reply.resolve("u.inbox") == Reply(TOPICS.results, "unwritable")


def test_a_record_refused_only_for_its_batch_fails_no_command() -> None:
    marks, _reply = failures(describe=3000)
    marks.batch_size = 1_000_000
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    changes = marks.mark([Refusal((0, 1), record(TOPICS.pull_requests, b"x" * 2000), too_large)])
    assert changes and marks.get((0, 1)) is None
    assert marks.batch_size == 3000 - codec.BATCH_OVERHEAD


def test_failed_deliveries_are_matched_to_their_command_records() -> None:
    marks, _reply = failures()
    first = record(TOPICS.pull_requests, b"a")
    second = record(TOPICS.pull_requests, b"b")
    sent = [((0, 1), [first]), ((0, 2), [record(TOPICS.events, b"e"), second])]
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    away = KafkaError(KafkaError._MSG_TIMED_OUT)
    failed = [
        (TOPICS.pull_requests, b"k", b"b", too_large),
        (TOPICS.pull_requests, b"k", b"a", away),  # Kafka away: not the record's
        (TOPICS.pull_requests, b"k", b"zzz", too_large),  # not of this batch
    ]
    (refusal,) = marks.refusals(failed, sent)
    assert refusal.source == (0, 2) and refusal.record is second
