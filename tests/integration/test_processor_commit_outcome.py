"""A commit whose call failed although the transaction committed: the processor keeps the
batch's state instead of dropping it (which would repeat a version later)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from integration.processor_commands import open_pr, retitle, send_all
from integration.processor_helpers import events_of, processor_settings, tail, wait_results
from integration.processor_runners import ThreadedProcessor

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED


def test_commit_that_reached_kafka_but_reported_a_timeout_keeps_the_state(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    """The first commit goes through, then the call reports a retriable timeout (what a
    commit_transaction that timed out after EndTxn reached the coordinator looks like). The
    processor replaces its producer, sees from the committed offsets that the batch committed,
    and keeps its state: the next command on the pull request is version 2, not a repeat."""
    holder: list[ThreadedProcessor] = []
    injected: list[str] = []

    def commit_then_time_out(step: str) -> None:
        if step == "before_commit" and not injected:
            injected.append(step)
            producer = holder[0].processor._txn.producer
            producer.commit_transaction(10)
            raise KafkaException(
                KafkaError(KafkaError._TIMED_OUT, "injected after the commit", retriable=True)
            )

    opened = open_pr("pr-c1")
    renamed = retitle("pr-c1", "Second title")
    runner = ThreadedProcessor(processor_settings(kafka_settings), fault=commit_then_time_out)
    holder.append(runner)
    with runner as p:
        send_all(kafka_settings, [opened])
        (first,) = wait_results(kafka_settings, {opened.command_id}, timeout=30)
        send_all(kafka_settings, [renamed])
        results = wait_results(kafka_settings, {opened.command_id, renamed.command_id}, 30)
    assert injected and p.exit_code == 0
    by_id = {r.command_id: r for r in results}
    assert len(results) == 2, results
    assert first.state == COMMAND_STATE_SUCCEEDED and first.version == 1
    second = by_id[renamed.command_id]
    assert second.state == COMMAND_STATE_SUCCEEDED and second.version == 2, second
    assert p.processor._counts["aborts"] == 0 and p.processor._counts["batches"] == 2
    with tail(kafka_settings, ensured_topics.events) as t:
        versions = [e.version for e in events_of(t.drain())]
    assert versions == [1, 2]
