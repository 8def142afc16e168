"""Records the processor cannot use go to the DLQ, as received, inside the transaction; the
loop goes on with the next command."""

from __future__ import annotations

from helpers.ids import bound_id
from integration.processor_commands import CommandProducer, command_headers, open_pr
from integration.processor_helpers import processor_settings, results_of, tail, wait_results
from integration.processor_runners import ThreadedProcessor

from prgate.kafka import codec
from prgate.kafka.contract import HEADER_CORRELATION_ID, HEADER_REPLY_TO, Topics
from prgate.kafka.settings import KafkaSettings
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.outcome_pb2 import COMMAND_STATE_FAILED, COMMAND_STATE_SUCCEEDED

GARBAGE = b"\xff\x00 this is not protobuf \x07"


def test_garbage_lands_in_dlq_and_next_command_is_processed(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    garbage_id = bound_id("garbage-1", "pr-9")
    empty_id = bound_id("empty-1", "pr-9")
    no_command = CommandEnvelope(command_id=empty_id, pull_request_id="pr-9")
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
                kafka_settings, {garbage_id, empty_id, after.command_id}, timeout=30
            )
        }
        with tail(kafka_settings, ensured_topics.dlq) as t:
            dead = t.wait_until(lambda recs: len(recs) >= 3, 15, "three dead letters")
    assert running.exit_code == 0

    assert results[after.command_id].state == COMMAND_STATE_SUCCEEDED
    failed = results[garbage_id]
    assert failed.state == COMMAND_STATE_FAILED and failed.pull_request_id == "pr-9"
    assert "not a protobuf CommandEnvelope" in failed.error_message
    assert results[empty_id].state == COMMAND_STATE_FAILED
    assert "names no command" in results[empty_id].error_message

    assert len(dead) == 3
    first, second, third = (
        codec.decode_dead_letter(r.key, r.value, r.headers)
        for r in sorted(dead, key=lambda r: r.offset)
    )
    assert (first.key, first.value) == (b"pr-9", GARBAGE)
    assert codec.header(first.headers, "x-custom") == "kept"
    assert codec.header(first.headers, HEADER_CORRELATION_ID) == garbage_id
    assert "not a protobuf CommandEnvelope" in first.error
    assert first.source_topic == ensured_topics.commands
    assert first.source_offset == 0 and first.source_partition >= 0
    assert second.value == no_command.SerializeToString()
    assert third.value is None and "empty value" in third.error

    # Nothing else was written for the bad records: one result each, events only for the open.
    with tail(kafka_settings, ensured_topics.results) as t:
        assert len(results_of(t.drain())) == 3
    with tail(kafka_settings, ensured_topics.events) as t:
        assert len(t.drain()) == 1
