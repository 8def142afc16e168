"""When the watchdog declares the group consumer wedged, the processor replaces it: the new
consumer rejoins, restores its partitions and goes on where the old one stopped."""

from __future__ import annotations

import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from integration.processor_commands import open_pr, retitle, send_all
from integration.processor_helpers import events_of, processor_settings, tail, wait_results
from integration.processor_runners import ThreadedProcessor

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED
from processor.watchdog import ConsumerWatchdog, lagging_partitions


class AlarmOnce(ConsumerWatchdog):
    """Declares the consumer wedged once, when armed."""

    def __init__(self) -> None:
        super().__init__(lagging=lambda consumer, timeout_s: {})
        self.armed = False
        self.fired = False

    def idle(self, consumer: Consumer) -> str | None:
        if self.armed and not self.fired:
            self.fired = True
            return "forced by the test"
        return None


def test_a_replaced_consumer_resumes_with_restored_state(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    opened = open_pr("pr-w1")
    renamed = retitle("pr-w1", "After the new consumer")
    runner = ThreadedProcessor(processor_settings(kafka_settings))
    alarm = AlarmOnce()
    runner.processor.member.watchdog = alarm
    with runner as p:
        send_all(kafka_settings, [opened])
        wait_results(kafka_settings, {opened.command_id}, timeout=30)
        first = p.processor.member._consumer
        alarm.armed = True
        deadline = time.monotonic() + 30
        while p.processor.member._consumer is first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alarm.fired and p.processor.member._consumer is not first
        send_all(kafka_settings, [renamed])
        results = wait_results(kafka_settings, {opened.command_id, renamed.command_id}, 60)
    assert p.exit_code == 0
    assert len(results) == 2, results
    second = next(r for r in results if r.command_id == renamed.command_id)
    assert second.state == COMMAND_STATE_SUCCEEDED and second.version == 2, second
    with tail(kafka_settings, ensured_topics.events) as t:
        assert [e.version for e in events_of(t.drain())] == [1, 2]


def test_lagging_partitions_asks_the_broker_on_an_admin_connection(
    kafka_settings: KafkaSettings, ensured_topics: Topics
) -> None:
    """The watchdog's query against the broker: commands the group consumer has not read show
    as lagging (from the log start, before any position or committed offset); once read, none.
    (Its answers come from an admin client: the consumer's own watermark query waited behind
    the fetch the broker holds, blocking the loop for up to 0.5 s per partition.)"""
    settings = processor_settings(kafka_settings)
    consumer = Consumer(settings.consumer_config("watchdog-query"))
    consumer.subscribe([ensured_topics.commands])
    admin = AdminClient(kafka_settings.client_config())
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, "no assignment"
            consumer.poll(0.1)
        assert lagging_partitions(consumer, admin, 5.0) == {}
        commands = [open_pr("pr-q1"), open_pr("pr-q2"), open_pr("pr-q3")]
        send_all(kafka_settings, commands)
        lagging = lagging_partitions(consumer, admin, 5.0)
        assert lagging, lagging
        assert all(start == 0 for start, _end in lagging.values()), lagging
        assert sum(end for _start, end in lagging.values()) == len(commands), lagging
        read = 0
        while read < len(commands):
            assert time.monotonic() < deadline, f"read {read} of {len(commands)}"
            read += len([m for m in consumer.consume(10, 0.5) if m.error() is None])
        assert lagging_partitions(consumer, admin, 5.0) == {}
    finally:
        consumer.close()
