"""CommandProducer against the real broker: fixed headers, ack before return, bounded failure."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from helpers.ids import new_id

from gateway.producer import CommandProducer, KafkaUnavailable
from prgate.kafka.settings import KafkaSettings
from prgate.v1.commands_pb2 import ApprovePullRequest, CommandEnvelope

# Scheduling slack for a busy machine (seconds): a bound with it says "ends by its timeout,
# never hangs", not how fast; speed is measured in bench/.
SLACK_S = 5.0

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def envelope(pr: str = "pr-42") -> CommandEnvelope:
    return CommandEnvelope(
        command_id=new_id(pr),
        pull_request_id=pr,
        approve_pull_request=ApprovePullRequest(pull_request_id=pr, reviewer="bob"),
    )


def committed_records(settings: KafkaSettings) -> int:
    """Sum of the commands topic's high watermarks (retried: a fresh topic may lack a leader)."""
    consumer = Consumer(settings.client_config(**{"group.id": "unused"}))
    try:
        for attempt in range(50):
            try:
                return sum(
                    consumer.get_watermark_offsets(TopicPartition(settings.topics.commands, p), 5)[
                        1
                    ]
                    for p in range(3)
                )
            except KafkaException:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")
    finally:
        consumer.close()


@pytest.mark.usefixtures("ensured_topics")
def test_send_returns_after_the_ack_and_writes_the_fixed_headers(
    kafka_settings: KafkaSettings,
) -> None:
    env = envelope()

    async def main() -> None:
        producer = CommandProducer(kafka_settings)
        await producer.start()
        try:
            assert committed_records(kafka_settings) == 0
            await producer.send(
                env, reply_to=kafka_settings.topics.results, timeout=10, traceparent=TRACEPARENT
            )
            # acks=all: once send returned, the record is below the high watermark.
            assert committed_records(kafka_settings) == 1
            assert producer.healthy()
        finally:
            await producer.close()
        assert producer._thread is not None
        assert not producer._thread.is_alive()
        with pytest.raises(KafkaUnavailable, match="closed"):
            await producer.send(env, reply_to="x", timeout=1)

    asyncio.run(main())

    consumer = Consumer(
        kafka_settings.client_config(
            **{"group.id": f"t-{uuid.uuid4()}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([kafka_settings.topics.commands])
    try:
        msg = None
        deadline = time.monotonic() + 15
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error():
                msg = None
    finally:
        consumer.close()
    assert msg is not None
    assert msg.key() == b"pr-42"
    assert CommandEnvelope.FromString(msg.value() or b"") == env
    assert dict(msg.headers() or []) == {
        "correlation-id": env.command_id.encode(),
        "reply-to": kafka_settings.topics.results.encode(),
        "message-type": b"prgate.v1.CommandEnvelope",
        "traceparent": TRACEPARENT.encode(),
    }


@pytest.mark.usefixtures("ensured_topics")
def test_health_recovers_without_traffic_once_the_broker_answers(
    kafka_settings: KafkaSettings,
) -> None:
    async def main() -> None:
        producer = CommandProducer(kafka_settings)
        await producer.start()
        try:
            producer._healthy = False  # as after error_cb(_ALL_BROKERS_DOWN)
            assert not producer.healthy()
            for _ in range(40):
                if producer.healthy():
                    break
                await asyncio.sleep(0.1)
            assert producer.healthy()
        finally:
            await producer.close()
        assert not producer.healthy()

    asyncio.run(main())


def test_unreachable_broker_raises_within_the_callers_timeout() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="t-nowhere.")

    async def main() -> None:
        producer = CommandProducer(settings)
        await producer.start()
        try:
            started = time.monotonic()
            with pytest.raises(KafkaUnavailable, match=r"no acknowledgement .* within 1\.5s"):
                await producer.send(envelope(), reply_to="r", timeout=1.5)
            elapsed = time.monotonic() - started
            # It waits its timeout, and ends by it (plus scheduling slack, not a speed target).
            assert 1.4 < elapsed < 1.5 + SLACK_S
            # error_cb reported the unreachable broker by now.
            assert not producer.healthy()
        finally:
            started = time.monotonic()
            await producer.close(timeout=1.0)
            assert time.monotonic() - started < 1.0 + SLACK_S

    asyncio.run(main())


def test_dead_broker_surfaces_as_a_delivery_error_after_message_timeout() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="t-nowhere.")

    async def main() -> None:
        producer = CommandProducer(settings, delivery_timeout_ms=800)
        await producer.start()
        try:
            started = time.monotonic()
            with pytest.raises(KafkaUnavailable, match=r"delivery to t-nowhere\.commands failed"):
                await producer.send(envelope(), reply_to="r", timeout=30)
            # Ended by the 0.8 s delivery timeout, long before the call's own 30 s.
            assert time.monotonic() - started < 0.8 + SLACK_S
            assert not producer.healthy()
        finally:
            await producer.close(timeout=0.5)

    asyncio.run(main())


def test_close_fails_records_still_queued_instead_of_hanging() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="t-nowhere.")

    async def main() -> None:
        producer = CommandProducer(settings, delivery_timeout_ms=60_000)
        await producer.start()
        sending = asyncio.ensure_future(producer.send(envelope(), reply_to="r", timeout=30))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await producer.close(timeout=0.3)
        with pytest.raises(KafkaUnavailable, match=r"delivery .* failed"):
            await asyncio.wait_for(sending, 0.3 + SLACK_S)
        # Failed by close(0.3), not by the 60 s delivery timeout.
        assert time.monotonic() - started < 0.3 + SLACK_S

    asyncio.run(main())
