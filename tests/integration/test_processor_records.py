"""Records the processor cannot or must not write never wedge it (issue 12, items 1, 2, 4):
a reply-to outside the allowlist falls back to the results topic; a snapshot over the
pull-requests topic's limit is rejected before anything is produced; a record Kafka refuses all
the same (a limit lowered after start) costs one abort and fails only its command; a reply topic
Kafka refuses is given up for the results topic; a DLQ copy that would not fit is cut. After
each, the next command on the same partitions completes."""

from __future__ import annotations

import re

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from helpers.ids import bound_id
from helpers.limits import partition_of, set_max_message_bytes
from integration.processor_commands import (
    CommandProducer,
    command_headers,
    envelope,
    open_pr,
    retitle,
)
from integration.processor_helpers import processor_settings, results_of, tail, wait_results
from integration.processor_runners import ThreadedProcessor

from prgate.kafka import codec
from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import commands_pb2
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.outcome_pb2 import (
    COMMAND_STATE_FAILED,
    COMMAND_STATE_REJECTED,
    COMMAND_STATE_SUCCEEDED,
)
from prgate.v1.results_pb2 import CommandResult

NEXT_COMMAND_S = 10.0  # bound for the next good command after a bad record (not a speed test)


def create_topics(kafka: KafkaSettings, *names: str) -> None:
    admin = AdminClient(kafka.client_config())
    for future in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
        future.result(timeout=15)


def send(kafka: KafkaSettings, env: CommandEnvelope, reply_to: str | None = None) -> None:
    producer = CommandProducer(kafka)
    producer.raw(
        env.pull_request_id.encode(),
        env.SerializeToString(),
        command_headers(env.command_id, reply_to or kafka.topics.results),
    )
    producer.close()


def completes(kafka: KafkaSettings, env: CommandEnvelope) -> CommandResult:
    """Send ``env`` and wait (bounded) for its result: the partition is not stuck."""
    send(kafka, env)
    (result,) = [
        r
        for r in wait_results(kafka, {env.command_id}, NEXT_COMMAND_S)
        if r.command_id == (env.command_id)
    ]
    return result


def same_partition(pull_request_id: str, partitions: int) -> str:
    """Another pull request id on the same commands partition."""
    target = partition_of(pull_request_id, partitions)
    return next(
        f"{pull_request_id}-n{n}"
        for n in range(1000)
        if partition_of(f"{pull_request_id}-n{n}", partitions) == target
    )


def result_of(kafka: KafkaSettings, command_id: str, timeout: float = 30.0) -> CommandResult:
    results = [r for r in wait_results(kafka, {command_id}, timeout) if r.command_id == command_id]
    assert len(results) == 1, results
    return results[0]


def open_with(pr: str, description: str) -> CommandEnvelope:
    return envelope(
        pr,
        open_pull_request=commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title="Big",
            description=description,
            author="alice",
            source_branch=f"feature/{pr}",
            target_branch="main",
        ),
    )


def test_reply_to_outside_the_allowlist_falls_back_and_never_stalls(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    prefix = kafka_settings.topic_prefix
    inbox, listed, other_app = f"{prefix}inbox", f"{prefix}replies.a", f"{prefix}other-app"
    create_topics(kafka_settings, inbox, listed, other_app)
    settings = processor_settings(
        kafka_settings, reply_topics=inbox, reply_topics_regex=re.escape(prefix) + r"replies\..*"
    )
    refused = {
        "__consumer_offsets": "internal_topic",
        "__transaction_state": "internal_topic",
        other_app: "not_allowed",
        ensured_topics.events: "contract_topic",
        f"{prefix}replies.missing": "missing_topic",
        "bad name!": "invalid_name",
    }
    with ThreadedProcessor(settings) as running:
        completes(kafka_settings, open_pr("pr-warmup"))
        bad = {reply_to: open_pr(f"pr-bad-{n}") for n, reply_to in enumerate(refused)}
        for reply_to, env in bad.items():
            send(kafka_settings, env, reply_to)
        good = {inbox: open_pr("pr-inbox"), listed: open_pr("pr-listed")}
        for reply_to, env in good.items():
            send(kafka_settings, env, reply_to)
        fallback = wait_results(kafka_settings, {e.command_id for e in bad.values()}, 30)
        for reply_to, env in good.items():
            with tail(kafka_settings, reply_to) as t:
                (answer,) = results_of(t.wait_until(lambda recs: len(recs) >= 1, 30, reply_to))
            assert answer.command_id == env.command_id
        # The next command on each bad record's pull request (its partition) completes.
        for n, env in enumerate(bad.values()):
            after = completes(kafka_settings, retitle(env.pull_request_id, f"after {n}"))
            assert after.state == COMMAND_STATE_SUCCEEDED
        counts = running.processor.counts
    assert running.exit_code == 0
    assert {r.command_id for r in fallback} >= {e.command_id for e in bad.values()}
    assert all(r.state == COMMAND_STATE_SUCCEEDED for r in fallback)
    assert counts["aborts"] == 0 and counts["record_aborts"] == 0, counts
    with tail(kafka_settings, other_app) as t:
        assert t.drain() == []  # another application's topic got nothing
    with tail(kafka_settings, ensured_topics.events) as t:
        assert all(rec.value and b"CommandResult" not in rec.value for rec in t.drain())


def test_a_snapshot_over_the_topics_limit_is_rejected_before_producing(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    set_max_message_bytes(kafka_settings, ensured_topics.pull_requests, 3000)
    big = open_with("pr-big", "x" * 3500)
    grown = open_with("pr-grown", "d" * 1500)
    checks = [
        envelope(
            "pr-grown",
            record_check_result=commands_pb2.RecordCheckResult(
                pull_request_id="pr-grown", check_name=f"{n:03d}-" + "c" * 200, conclusion=1
            ),
        )
        for n in range(10)
    ]
    with ThreadedProcessor(processor_settings(kafka_settings)) as running:
        for env in (big, grown, *checks):
            send(kafka_settings, env)
        results = {
            r.command_id: r
            for r in wait_results(kafka_settings, {e.command_id for e in (big, grown, *checks)}, 30)
        }
        after_big = completes(kafka_settings, open_with("pr-big", "small"))
        # pr-grown is full (each command adds to its recent_commands, so everything is
        # refused now); a neighbour on its partition is not held up.
        neighbour = same_partition("pr-grown", kafka_settings.partitions)
        after_grown = completes(kafka_settings, open_pr(neighbour))
        counts = running.processor.counts
    rejected = results[big.command_id]
    assert rejected.state == COMMAND_STATE_REJECTED
    assert [v.reason for v in rejected.violations] == ["SNAPSHOT_TOO_LARGE"]
    states = [results[c.command_id].state for c in checks]
    first_rejected = states.index(COMMAND_STATE_REJECTED)
    assert first_rejected > 0 and set(states[:first_rejected]) == {COMMAND_STATE_SUCCEEDED}
    assert set(states[first_rejected:]) == {COMMAND_STATE_REJECTED}
    too_large = results[checks[first_rejected].command_id]
    assert too_large.violations[0].reason == "SNAPSHOT_TOO_LARGE"
    assert too_large.violations[0].kind == 2  # FAILED_PRECONDITION
    assert after_big.state == after_grown.state == COMMAND_STATE_SUCCEEDED
    assert counts["aborts"] == 0, counts
    with tail(kafka_settings, ensured_topics.pull_requests) as t:
        snapshots = t.drain()
    assert all(len(rec.value or b"") < 3000 for rec in snapshots)
    partitions = {rec.key: rec.partition for rec in snapshots}
    assert partitions[neighbour.encode()] == partitions[b"pr-grown"]
    grown_versions = [codec.decode_snapshot(r.key, r.value, r.headers) for r in snapshots]
    last = [s for s in grown_versions if s is not None and s.pull_request_id == "pr-grown"][-1]
    assert last.version == first_rejected + 1  # the open and the checks that fit


def test_a_record_kafka_refuses_fails_its_command_with_one_abort(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    """The limit drops after the processor read it: Kafka refuses the snapshot in the delivery
    report, which breaks the transaction. One abort, then the batch commits with that command
    FAILED (and in the DLQ); the limit is learned, so the next one is rejected up front."""
    with ThreadedProcessor(processor_settings(kafka_settings)) as running:
        completes(kafka_settings, open_pr("pr-before"))
        set_max_message_bytes(kafka_settings, ensured_topics.pull_requests, 3000)
        big = open_with("pr-stale", "y" * 3500)
        send(kafka_settings, big)
        failed = result_of(kafka_settings, big.command_id)
        after = completes(kafka_settings, open_with("pr-stale", "fits"))
        again = open_with("pr-again", "z" * 3500)
        send(kafka_settings, again)
        rejected = result_of(kafka_settings, again.command_id)
        counts = running.processor.counts
    assert failed.state == COMMAND_STATE_FAILED
    assert "RECORD_REFUSED" in failed.error_message
    assert "MSG_SIZE_TOO_LARGE" in failed.error_message
    assert after.state == COMMAND_STATE_SUCCEEDED
    assert rejected.state == COMMAND_STATE_REJECTED
    assert rejected.violations[0].reason == "SNAPSHOT_TOO_LARGE"
    assert counts["record_aborts"] == 1 and counts["aborts"] == 1, counts
    with tail(kafka_settings, ensured_topics.dlq) as t:
        (dead,) = t.wait_until(lambda recs: len(recs) >= 1, 15, "the dead letter")
    letter = codec.decode_dead_letter(dead.key, dead.value, dead.headers)
    assert letter.value == big.SerializeToString() and "RECORD_REFUSED" in letter.error


def test_a_reply_topic_kafka_refuses_is_given_up_for_the_results_topic(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    inbox = f"{kafka_settings.topic_prefix}inbox"
    create_topics(kafka_settings, inbox)
    settings = processor_settings(kafka_settings, reply_topics=inbox)
    with ThreadedProcessor(settings) as running:
        first = open_pr("pr-first")
        send(kafka_settings, first, inbox)
        with tail(kafka_settings, inbox) as t:
            t.wait_until(lambda recs: len(recs) >= 1, 30, "the first answer in the inbox")
        set_max_message_bytes(kafka_settings, inbox, 100)
        second = open_pr("pr-second")
        send(kafka_settings, second, inbox)
        answer = result_of(kafka_settings, second.command_id)
        after = completes(kafka_settings, retitle("pr-second", "after"))
        counts = running.processor.counts
    assert answer.state == COMMAND_STATE_SUCCEEDED  # applied; only the answer moved
    assert after.state == COMMAND_STATE_SUCCEEDED
    assert counts["record_aborts"] == 1, counts


def test_a_dead_letter_over_the_dlq_topics_limit_is_cut(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    set_max_message_bytes(kafka_settings, ensured_topics.dlq, 4000)
    garbage = b"\xff" + bytes(range(256)) * 40  # 10 KB that is no CommandEnvelope
    command_id = bound_id("huge-garbage", "pr-huge")
    producer = CommandProducer(kafka_settings)
    producer.raw(b"pr-huge", garbage, command_headers(command_id, ensured_topics.results))
    producer.close()
    with ThreadedProcessor(processor_settings(kafka_settings)) as running:
        failed = result_of(kafka_settings, command_id)
        after = completes(kafka_settings, open_pr("pr-huge"))
        counts = running.processor.counts
    assert failed.state == COMMAND_STATE_FAILED and after.state == COMMAND_STATE_SUCCEEDED
    assert counts["aborts"] == 0, counts
    with tail(kafka_settings, ensured_topics.dlq) as t:
        (dead,) = t.wait_until(lambda recs: len(recs) >= 1, 15, "the dead letter")
    letter = codec.decode_dead_letter(dead.key, dead.value, dead.headers)
    assert letter.original_size is not None and letter.original_size > len(garbage)
    assert letter.value is not None and garbage.startswith(letter.value)
    assert len(letter.value) < len(garbage) and "not a protobuf" in letter.error


def test_a_command_id_of_another_pull_request_gets_no_second_result(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    """Issue 12, item 3: X was used for pr-a; X sent for pr-b is dead-lettered unanswered."""
    opened_a, opened_b = open_pr("pr-a"), open_pr("pr-b")
    approve_a = envelope(
        "pr-a",
        approve_pull_request=commands_pb2.ApprovePullRequest(pull_request_id="pr-a", reviewer="b"),
    )
    copy_for_b = envelope(
        "pr-b",
        command_id=approve_a.command_id,
        approve_pull_request=commands_pb2.ApprovePullRequest(pull_request_id="pr-b", reviewer="b"),
    )
    with ThreadedProcessor(processor_settings(kafka_settings)) as running:
        for env in (opened_a, opened_b, approve_a, copy_for_b):
            send(kafka_settings, env)
        with tail(kafka_settings, ensured_topics.dlq) as t:
            (dead,) = t.wait_until(lambda recs: len(recs) >= 1, 30, "the copy in the DLQ")
        after = completes(kafka_settings, retitle("pr-b", "after"))
        counts = running.processor.counts
    letter = codec.decode_dead_letter(dead.key, dead.value, dead.headers)
    assert letter.value == copy_for_b.SerializeToString()
    assert "COMMAND_ID_NOT_BOUND" in letter.error
    with tail(kafka_settings, ensured_topics.results) as t:
        answers = [r for r in results_of(t.drain()) if r.command_id == approve_a.command_id]
    assert [(r.pull_request_id, r.state) for r in answers] == [("pr-a", COMMAND_STATE_SUCCEEDED)]
    assert after.state == COMMAND_STATE_SUCCEEDED and after.version == 2  # pr-b: not approved
    assert counts["aborts"] == 0
