"""One command through a real processor: events, snapshot and result, all protobuf with the
fixed headers, in one transaction that read_committed readers see whole or not at all."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from helpers.limits import partition_of
from integration.processor_commands import (
    CommandProducer,
    approve,
    command_headers,
    merge,
    open_pr,
    send_all,
)
from integration.processor_helpers import (
    events_of,
    processor_settings,
    results_of,
    snapshots_of,
    tail,
    wait_results,
)
from integration.processor_runners import ThreadedProcessor

from prgate.kafka import codec
from prgate.kafka.contract import (
    HEADER_CORRELATION_ID,
    HEADER_MESSAGE_TYPE,
    TYPE_COMMAND_RESULT,
    TYPE_EVENT_ENVELOPE,
    TYPE_PULL_REQUEST,
    Topics,
)
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.outcome_pb2 import COMMAND_STATE_REJECTED, COMMAND_STATE_SUCCEEDED
from prgate.v1.pull_request_pb2 import PULL_REQUEST_STATUS_OPEN


def test_command_yields_events_snapshot_and_result(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    opened = open_pr("pr-1", author="alice")
    approved = approve("pr-1", "bob")
    blocked = merge("pr-1")  # wait: approved by bob, no checks -> merge succeeds
    commands = [opened, approved, blocked]
    with ThreadedProcessor(processor_settings(kafka_settings)):
        send_all(kafka_settings, commands)
        results = wait_results(kafka_settings, {c.command_id for c in commands}, timeout=30)

    by_id = {r.command_id: r for r in results}
    assert len(results) == 3
    first = by_id[opened.command_id]
    assert first.state == COMMAND_STATE_SUCCEEDED
    assert first.version == 1 and first.pull_request_id == "pr-1"
    assert first.command_type == "OpenPullRequest" and not first.duplicate
    assert [e.WhichOneof("event") for e in first.events] == ["pull_request_opened"]
    assert by_id[approved.command_id].version == 2
    final = by_id[blocked.command_id]
    assert final.state == COMMAND_STATE_SUCCEEDED and final.version == 4
    assert final.completed_at.seconds > 0

    with tail(kafka_settings, ensured_topics.results) as t:
        for rec in t.drain():
            assert rec.header(HEADER_MESSAGE_TYPE) == TYPE_COMMAND_RESULT
            assert rec.header(HEADER_CORRELATION_ID) == codec.key_text(rec.key)

    with tail(kafka_settings, ensured_topics.events) as t:
        event_recs = t.drain()
    events = events_of(event_recs)
    assert [e.version for e in events] == [1, 2, 3, 4]
    assert {rec.key for rec in event_recs} == {b"pr-1"}
    for rec, event in zip(event_recs, events, strict=True):
        assert rec.header(HEADER_MESSAGE_TYPE) == TYPE_EVENT_ENVELOPE
        assert rec.header(HEADER_CORRELATION_ID) == event.command_id
        assert event.event_id and event.occurred_at.seconds > 0
    assert [e.command_id for e in events] == [
        opened.command_id,
        approved.command_id,
        blocked.command_id,
        blocked.command_id,
    ]
    # The result lists exactly the events it caused.
    assert list(final.events) == events[2:]

    with tail(kafka_settings, ensured_topics.pull_requests) as t:
        snap_recs = t.drain()
    snapshots = snapshots_of(snap_recs)
    assert [s.version for s in snapshots] == [1, 2, 4]
    assert all(r.header(HEADER_MESSAGE_TYPE) == TYPE_PULL_REQUEST for r in snap_recs)
    assert snapshots[0].status == PULL_REQUEST_STATUS_OPEN
    assert snapshots[-1].merge.merged_by_user == "bob"
    # The processed-command record travels with the snapshot.
    assert [p.command_id for p in snapshots[-1].recent_commands] == [c.command_id for c in commands]


def test_rejection_is_answered_and_remembered(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    opened = open_pr("pr-2", author="alice")
    self_approval = approve("pr-2", "alice")
    unknown = approve("pr-missing", "bob")
    commands = [opened, self_approval, unknown]
    with ThreadedProcessor(processor_settings(kafka_settings)):
        send_all(kafka_settings, commands)
        results = {
            r.command_id: r
            for r in wait_results(kafka_settings, {c.command_id for c in commands}, timeout=30)
        }
    rejected = results[self_approval.command_id]
    assert rejected.state == COMMAND_STATE_REJECTED and rejected.version == 1
    assert [v.reason for v in rejected.violations] == ["SELF_APPROVAL"]
    assert results[unknown.command_id].violations[0].reason == "PULL_REQUEST_NOT_FOUND"
    with tail(kafka_settings, ensured_topics.pull_requests) as t:
        snapshots = snapshots_of(t.drain())
    # The rejection rewrote the snapshot (same version) to remember the command id; the unknown
    # pull request got no snapshot at all.
    assert [(s.pull_request_id, s.version) for s in snapshots] == [("pr-2", 1), ("pr-2", 1)]
    assert snapshots[-1].recent_commands[-1].command_id == self_approval.command_id


def test_aborted_transaction_is_invisible_to_read_committed(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    """The first commit fails with an abortable error: the processor aborts, rewinds and does
    the batch again. read_uncommitted shows both attempts; read_committed exactly one."""
    injected: list[str] = []

    def fail_first_commit(step: str) -> None:
        if step == "before_commit" and not injected:
            injected.append(step)
            # Let the batch's records reach the broker first (else the abort just purges them
            # from the local queue, and there is nothing for read_committed to hide).
            time.sleep(0.5)
            raise KafkaException(
                KafkaError(KafkaError._FENCED, "injected by the test", txn_requires_abort=True)
            )

    opened = open_pr("pr-3")
    with ThreadedProcessor(processor_settings(kafka_settings), fault=fail_first_commit) as p:
        send_all(kafka_settings, [opened])
        results = wait_results(kafka_settings, {opened.command_id}, timeout=30)
    assert injected and p.exit_code == 0
    assert len(results) == 1 and results[0].state == COMMAND_STATE_SUCCEEDED
    assert results[0].version == 1 and not results[0].duplicate

    for topic, expect_committed in (
        (ensured_topics.events, 1),
        (ensured_topics.pull_requests, 1),
        (ensured_topics.results, 1),
    ):
        with tail(kafka_settings, topic, "read_committed") as t:
            committed = t.drain()
        with tail(kafka_settings, topic, "read_uncommitted") as t:
            everything = t.drain()
        assert len(committed) == expect_committed, topic
        assert len(everything) == 2 * expect_committed, topic  # the aborted attempt is there
    with tail(kafka_settings, ensured_topics.events) as t:
        (event,) = events_of(t.drain())
    assert isinstance(event, EventEnvelope) and event.version == 1
    assert results_of([]) == []


def test_result_goes_to_the_reply_to_topic_when_it_exists(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    """An allowed reply-to that exists gets the result; a missing one and a contract topic fall
    back (the allowlist's other refusals: test_processor_records.py)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    inbox = f"{kafka_settings.topic_prefix}gateway-7.results"
    admin = AdminClient(kafka_settings.client_config())
    admin.create_topics([NewTopic(inbox, 1, 1)])[inbox].result(timeout=15)
    to_inbox = open_pr("pr-r1")
    to_missing = open_pr("pr-r2")
    to_events = open_pr("pr-r3")
    producer = CommandProducer(kafka_settings)
    for env, reply_to in (
        (to_inbox, inbox),
        (to_missing, f"{kafka_settings.topic_prefix}no-such-topic"),
        (to_events, ensured_topics.events),  # never a reply-to: results would pollute history
    ):
        producer.raw(
            env.pull_request_id.encode(),
            env.SerializeToString(),
            command_headers(env.command_id, reply_to),
        )
    producer.close()
    settings = processor_settings(
        kafka_settings, reply_topics=f"{inbox},{kafka_settings.topic_prefix}no-such-topic"
    )
    with ThreadedProcessor(settings):
        with tail(kafka_settings, inbox) as t:
            (answer,) = results_of(t.wait_until(lambda recs: len(recs) >= 1, 30, "inbox result"))
        fallback = wait_results(
            kafka_settings, {to_missing.command_id, to_events.command_id}, timeout=30
        )
    assert answer.command_id == to_inbox.command_id
    assert {r.command_id for r in fallback} == {to_missing.command_id, to_events.command_id}
    with tail(kafka_settings, ensured_topics.events) as t:
        assert len(events_of(t.drain())) == 3  # only the three PullRequestOpened events


def test_results_share_their_commands_partition_number(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    """A result goes to the partition number of its command (the pull request's), not where
    its key, the command id, hashes: one transaction touches the same partition numbers on
    every output topic. The key stays the command id."""
    partitions = kafka_settings.partitions
    prs = [f"pr-part-{n}" for n in range(12)]
    assert len({partition_of(pr, partitions) for pr in prs}) == partitions  # every partition
    commands = [open_pr(pr) for pr in prs]
    with ThreadedProcessor(processor_settings(kafka_settings)):
        send_all(kafka_settings, commands)
        wait_results(kafka_settings, {c.command_id for c in commands}, timeout=30)
    with tail(kafka_settings, ensured_topics.results) as t:
        results = t.drain()
    with tail(kafka_settings, ensured_topics.events) as t:
        events = t.drain()
    event_partition = {codec.key_text(r.key): r.partition for r in events}
    by_command = {c.command_id: c.pull_request_id for c in commands}
    assert len(results) == len(commands)
    for rec in results:
        pr = by_command[codec.key_text(rec.key)]
        assert rec.partition == partition_of(pr, partitions) == event_partition[pr]
    # Results keyed by command id would have spread differently: the test is not vacuous.
    assert any(
        partition_of(c.command_id, partitions) != partition_of(c.pull_request_id, partitions)
        for c in commands
    )


def test_results_topic_with_fewer_partitions_gets_the_partition_number_modulo_its_count(
    kafka_settings: KafkaSettings,
) -> None:
    topics = kafka_settings.topics
    client = AdminClient(kafka_settings.client_config())
    created = client.create_topics([NewTopic(topics.results, 2, -1)], operation_timeout=10)
    created[topics.results].result(timeout=15)
    deadline = time.monotonic() + 15
    while len(client.list_topics(topics.results, timeout=5).topics[topics.results].partitions) < 2:
        assert time.monotonic() < deadline, "results topic not visible"
    ensure_topics(kafka_settings)  # the others, with 3 partitions
    prs = [f"pr-mod-{n}" for n in range(9)]
    assert {partition_of(pr, 3) for pr in prs} == {0, 1, 2}
    commands = [open_pr(pr) for pr in prs]
    with ThreadedProcessor(processor_settings(kafka_settings)):
        send_all(kafka_settings, commands)
        wait_results(kafka_settings, {c.command_id for c in commands}, timeout=30)
    with tail(kafka_settings, topics.results) as t:
        results = t.drain()
    by_command = {c.command_id: c.pull_request_id for c in commands}
    assert len(results) == len(commands)
    for rec in results:
        assert rec.partition == partition_of(by_command[codec.key_text(rec.key)], 3) % 2
