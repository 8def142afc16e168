"""A redelivered command id (the same command produced twice) is answered twice, applied once."""

from __future__ import annotations

from collections import defaultdict

from integration.processor_commands import approve, check, open_pr, send_all
from integration.processor_helpers import events_of, processor_settings, results_of, tail
from integration.processor_runners import ThreadedProcessor

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from prgate.v1.outcome_pb2 import (
    COMMAND_STATE_REJECTED,
    COMMAND_STATE_SUCCEEDED,
    VIOLATION_KIND_ALREADY_EXISTS,
)
from prgate.v1.results_pb2 import CommandResult


def test_same_command_id_twice_yields_two_results_and_events_once(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    opened = open_pr("pr-d", author="alice")
    checked = check("pr-d", "ci")
    refused = approve("pr-d", "alice")  # self-approval: REJECTED, also remembered
    commands = [opened, opened, checked, refused, checked, refused, opened]
    with ThreadedProcessor(processor_settings(kafka_settings)):
        send_all(kafka_settings, commands[:4])
        with tail(kafka_settings, ensured_topics.results) as t:
            t.wait_until(lambda recs: len(recs) >= 4, 30, "four results")
        # A second processor run restores the remembered ids from the compacted topic.
    with ThreadedProcessor(processor_settings(kafka_settings)):
        send_all(kafka_settings, commands[4:])
        with tail(kafka_settings, ensured_topics.results) as t:
            results = results_of(t.wait_until(lambda recs: len(recs) >= 7, 30, "seven results"))

    # Results are keyed by command id: one id's answers share a partition, in order.
    by_id: dict[str, list[CommandResult]] = defaultdict(list)
    for result in results:
        by_id[result.command_id].append(result)
    assert len(results) == 7
    expected = {opened.command_id: 3, checked.command_id: 2, refused.command_id: 2}
    assert {cid: len(rs) for cid, rs in by_id.items()} == expected
    for answers in by_id.values():
        first, *again = answers
        assert not first.duplicate and all(r.duplicate for r in again)
        for r in again:
            assert (r.state, r.version, list(r.violations)) == (
                first.state,
                first.version,
                list(first.violations),
            )
            assert not r.events
    assert by_id[opened.command_id][0].state == COMMAND_STATE_SUCCEEDED
    assert by_id[checked.command_id][0].version == 2
    assert by_id[refused.command_id][0].state == COMMAND_STATE_REJECTED

    with tail(kafka_settings, ensured_topics.events) as t:
        events = events_of(t.drain())
    assert [(e.version, e.command_id) for e in events] == [
        (1, opened.command_id),
        (2, checked.command_id),
    ]


def test_same_command_id_with_another_command_is_refused_and_applies_nothing(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    """An idempotency key reused for a different command, past every gateway's memory."""
    opened = open_pr("pr-k", author="alice")
    first = check("pr-k", "ci")
    other = check("pr-k", "lint")
    other.command_id = first.command_id  # same id (key), different command
    with ThreadedProcessor(processor_settings(kafka_settings)):
        send_all(kafka_settings, [opened, first, other])
        with tail(kafka_settings, ensured_topics.results) as t:
            results = results_of(t.wait_until(lambda recs: len(recs) >= 3, 30, "three results"))
    answers = [r for r in results if r.command_id == first.command_id]
    assert [r.state for r in answers] == [COMMAND_STATE_SUCCEEDED, COMMAND_STATE_REJECTED]
    (violation,) = answers[1].violations
    assert violation.kind == VIOLATION_KIND_ALREADY_EXISTS
    assert violation.reason == "IDEMPOTENCY_KEY_REUSED"
    assert not answers[1].duplicate and not answers[1].events
    with tail(kafka_settings, ensured_topics.events) as t:
        events = events_of(t.drain())
    assert [(e.version, e.command_id) for e in events] == [
        (1, opened.command_id),
        (2, first.command_id),
    ]
