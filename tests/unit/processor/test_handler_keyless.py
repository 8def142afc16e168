"""A command record without a key is dead-lettered, never decided on the wrong partition."""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from helpers.ids import bound_id

from prgate.domain import Policy
from prgate.kafka.contract import HEADER_CORRELATION_ID, HEADER_DLQ_ERROR, HEADER_REPLY_TO, Topics
from prgate.v1.commands_pb2 import ChangePullRequestTitle, CommandEnvelope
from prgate.v1.outcome_pb2 import COMMAND_STATE_FAILED
from prgate.v1.pull_request_pb2 import PULL_REQUEST_STATUS_OPEN, PullRequest
from prgate.v1.results_pb2 import CommandResult
from processor.handler import CommandHandler, Outcome
from processor.state_store import MemoryPartition, PartitionStates

TOPICS = Topics("u.")


def test_keyless_command_goes_to_the_dlq_with_a_failed_result_and_changes_no_state() -> None:
    states = PartitionStates()
    existing = PullRequest(
        pull_request_id="pr-1", title="old", status=PULL_REQUEST_STATUS_OPEN, version=1
    )
    # The pull request lives on partition 0; a keyless record may land anywhere, here too.
    states.put_partition(0, MemoryPartition({"pr-1": existing}))
    command_id = bound_id("c-1", "pr-1")
    env = CommandEnvelope(
        command_id=command_id,
        change_pull_request_title=ChangePullRequestTitle(
            pull_request_id="pr-1", title="new", changed_by="u"
        ),
    )
    record = Message(
        topic=TOPICS.commands,
        partition=0,
        offset=3,
        key=None,
        value=env.SerializeToString(),
        headers=[
            (HEADER_CORRELATION_ID, command_id.encode()),
            (HEADER_REPLY_TO, TOPICS.results.encode()),
        ],
        timestamp=(TIMESTAMP_CREATE_TIME, 1_750_000_000_000),
    )
    staged = states.begin()
    handler = CommandHandler(TOPICS, Policy(), clock=lambda: datetime(2030, 1, 1, tzinfo=UTC))

    handled = handler.handle(record, staged)

    assert handled.outcome is Outcome.DEAD_LETTER
    assert handled.command_id == command_id and handled.events == 0
    assert len(staged) == 0
    assert sorted(o.topic for o in handled.outgoing) == sorted([TOPICS.dlq, TOPICS.results])
    (dead,) = [o for o in handled.outgoing if o.topic == TOPICS.dlq]
    error = dict(dead.headers or [])[HEADER_DLQ_ERROR] or b""
    assert b"no key" in error
    (reply,) = [o for o in handled.outgoing if o.topic == TOPICS.results]
    result = CommandResult()
    result.ParseFromString(reply.value or b"")
    assert result.state == COMMAND_STATE_FAILED and result.command_id == command_id
    assert result.pull_request_id == "pr-1"


def test_keyless_command_of_a_pull_request_held_elsewhere_gets_no_result() -> None:
    """Without a key the record may sit on any partition; where its pull request's state is
    not held, the id may already have its result on the right partition: no second one."""
    states = PartitionStates()
    states.put_partition(0, MemoryPartition({}))
    command_id = bound_id("c-2", "pr-elsewhere")
    env = CommandEnvelope(
        command_id=command_id,
        change_pull_request_title=ChangePullRequestTitle(
            pull_request_id="pr-elsewhere", title="new", changed_by="u"
        ),
    )
    record = Message(
        topic=TOPICS.commands,
        partition=0,
        offset=4,
        key=None,
        value=env.SerializeToString(),
        headers=[(HEADER_CORRELATION_ID, command_id.encode())],
        timestamp=(TIMESTAMP_CREATE_TIME, 1_750_000_000_000),
    )
    handler = CommandHandler(TOPICS, Policy(), clock=lambda: datetime(2030, 1, 1, tzinfo=UTC))
    handled = handler.handle(record, states.begin())
    assert handled.outcome is Outcome.DEAD_LETTER
    assert [o.topic for o in handled.outgoing] == [TOPICS.dlq]
