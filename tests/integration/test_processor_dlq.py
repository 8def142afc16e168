"""Records the processor cannot use go to the DLQ, as received, inside the transaction; the
loop goes on with the next command."""

from __future__ import annotations

from integration.processor_helpers import (
    CommandProducer,
    command_headers,
    open_pr,
    processor_settings,
    results_of,
    tail,
    wait_results,
)
from integration.processor_runners import ThreadedProcessor

from prgate.kafka_settings import KafkaSettings
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.outcome_pb2 import COMMAND_STATE_FAILED, COMMAND_STATE_SUCCEEDED
from processor.contract import (
    HEADER_CORRELATION_ID,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_SOURCE,
    HEADER_REPLY_TO,
    Topics,
)

GARBAGE = b"\xff\x00 this is not protobuf \x07"


def test_garbage_lands_in_dlq_and_next_command_is_processed(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    garbage_id = "garbage-1"
    no_command = CommandEnvelope(command_id="empty-1", pull_request_id="pr-9")
    after = open_pr("pr-9")
    producer = CommandProducer(kafka_settings)
    # Same key, so all three share one partition and are handled in this order.
    producer.raw(
        b"pr-9",
        GARBAGE,
        [*command_headers(garbage_id, ensured_topics.results), ("x-custom", b"kept")],
    )
    producer.raw(
        b"pr-9", no_command.SerializeToString(), [(HEADER_REPLY_TO, ensured_topics.results)]
    )
    producer.raw(b"pr-9", None, [])  # no value, no headers: dead-lettered, nobody to answer
    producer.send(after)
    producer.close()

    with ThreadedProcessor(processor_settings(kafka_settings)) as running:
        results = {
            r.command_id: r
            for r in wait_results(
                kafka_settings, {garbage_id, "empty-1", after.command_id}, timeout=30
            )
        }
        with tail(kafka_settings, ensured_topics.dlq) as t:
            dead = t.wait_until(lambda recs: len(recs) >= 3, 15, "three dead letters")
    assert running.exit_code == 0

    assert results[after.command_id].state == COMMAND_STATE_SUCCEEDED
    failed = results[garbage_id]
    assert failed.state == COMMAND_STATE_FAILED and failed.pull_request_id == "pr-9"
    assert "not a protobuf CommandEnvelope" in failed.error_message
    assert results["empty-1"].state == COMMAND_STATE_FAILED
    assert "names no command" in results["empty-1"].error_message

    assert len(dead) == 3
    first, second, third = sorted(dead, key=lambda r: r.offset)
    assert (first.key, first.value) == (b"pr-9", GARBAGE)
    assert first.headers["x-custom"] == b"kept"
    assert first.headers[HEADER_CORRELATION_ID] == garbage_id.encode()
    assert b"not a protobuf CommandEnvelope" in (first.headers[HEADER_DLQ_ERROR] or b"")
    source = (first.headers[HEADER_DLQ_SOURCE] or b"").decode()
    topic, partition, offset = source.rsplit("/", 2)
    assert topic == ensured_topics.commands and int(offset) == 0 and int(partition) >= 0
    assert second.value == no_command.SerializeToString()
    assert third.value is None and b"empty value" in (third.headers[HEADER_DLQ_ERROR] or b"")

    # Nothing else was written for the bad records: one result each, events only for the open.
    with tail(kafka_settings, ensured_topics.results) as t:
        assert len(results_of(t.drain())) == 3
    with tail(kafka_settings, ensured_topics.events) as t:
        assert len(t.drain()) == 1
