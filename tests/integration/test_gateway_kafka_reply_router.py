"""ReplyRouter against the real broker, with results produced transactionally like the processor."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Producer

from gateway.producer import KafkaUnavailable
from gateway.reply_router import ReplyRouter
from prgate.kafka.contract import HEADER_CORRELATION_ID, HEADER_MESSAGE_TYPE, TYPE_COMMAND_RESULT
from prgate.kafka.settings import KafkaSettings
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED
from prgate.v1.results_pb2 import CommandResult

# Scheduling slack for a busy machine (seconds): a bound with it says "ends by its timeout,
# never hangs", not how fast; speed is measured in bench/.
SLACK_S = 5.0


@pytest.fixture(scope="module")
def txn_producer(kafka_bootstrap: str) -> Iterator[Producer]:
    """A transactional producer, as the processor writes results."""
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-gwrr-{uuid.uuid4()}"}
    )
    producer.init_transactions(20)
    yield producer
    producer.close()


def produce_results(
    producer: Producer, topic: str, *values: CommandResult | bytes, abort: bool = False
) -> None:
    """One transaction with the given results (or raw garbage bytes); blocking."""
    producer.begin_transaction()
    for value in values:
        if isinstance(value, CommandResult):
            key, raw = value.command_id, value.SerializeToString()
        else:
            key, raw = "garbage", value
        producer.produce(
            topic,
            key=key,
            value=raw,
            headers=[(HEADER_CORRELATION_ID, key), (HEADER_MESSAGE_TYPE, TYPE_COMMAND_RESULT)],
        )
    if abort:
        producer.abort_transaction(10)
    else:
        producer.commit_transaction(10)


def ok(command_id: str) -> CommandResult:
    return CommandResult(
        command_id=command_id, pull_request_id="pr-1", state=COMMAND_STATE_SUCCEEDED, version=1
    )


async def eventually_cached(router: ReplyRouter, command_id: str, timeout: float = 10) -> bool:
    return await _until(lambda: router.lookup(command_id) is not None, timeout)


@pytest.mark.usefixtures("ensured_topics")
def test_waiter_gets_a_result_produced_after_reservation(
    kafka_settings: KafkaSettings, txn_producer: Producer
) -> None:
    topic = kafka_settings.topics.results

    async def main() -> None:
        router = ReplyRouter(kafka_settings)
        seen: list[str] = []
        router.add_listener(lambda r: seen.append(r.command_id))
        await router.start()
        try:
            assert router.caught_up() or await _until(router.caught_up)
            cid = str(uuid.uuid4())
            async with router.waiting(cid) as unary, router.waiting(cid) as watch:
                # Aborted records must never reach anybody (read_committed).
                await asyncio.to_thread(produce_results, txn_producer, topic, ok(cid), abort=True)
                assert await unary.result(0.3) is None
                await asyncio.to_thread(produce_results, txn_producer, topic, ok(cid), b"\xff\xff")
                got = await unary.result(10)  # latency is measured in bench/, not here
                also = await watch.result(1)
            assert got is not None
            assert got.command_id == cid
            assert got.state == COMMAND_STATE_SUCCEEDED
            assert also == got
            assert seen == [cid]
            assert router.waiting_count() == 0
            assert await _until(lambda: router.stats()["garbage"] == 1)
            assert router.stats()["results"] == 1
        finally:
            await router.close()
        assert router._tail._thread is not None
        assert not router._tail._thread.is_alive()

    asyncio.run(main())


@pytest.mark.usefixtures("ensured_topics")
def test_results_nobody_waited_for_are_kept_and_found_by_a_later_router(
    kafka_settings: KafkaSettings, txn_producer: Producer
) -> None:
    topic = kafka_settings.topics.results
    early = [str(uuid.uuid4()) for _ in range(5)]
    # Before any router exists: only the lookback can find these.
    produce_results(txn_producer, topic, *(ok(cid) for cid in early))

    async def main() -> None:
        first = ReplyRouter(kafka_settings, lookback_s=60)
        await first.start()
        try:
            assert await _until(first.caught_up)
            assert all(first.lookup(cid) is not None for cid in early)
            late = str(uuid.uuid4())
            await asyncio.to_thread(produce_results, txn_producer, topic, ok(late))
            assert await eventually_cached(first, late)
            # Nobody waited; WatchCommand-style: reserve afterwards, get it at once.
            async with first.waiting(late) as waiter:
                got = await waiter.result(0)
            assert got is not None
            assert got.command_id == late

            # A gateway started later answers from the lookback window...
            second = ReplyRouter(kafka_settings, lookback_s=60)
            await second.start()
            try:
                assert await _until(second.caught_up)
                assert all(second.lookup(cid) is not None for cid in [*early, late])
            finally:
                await second.close()

            # ...but not for results older than its window.
            await asyncio.sleep(1.2)
            narrow = ReplyRouter(kafka_settings, lookback_s=1.0)
            await narrow.start()
            try:
                assert await _until(narrow.caught_up)
                assert narrow.lookup(late) is None
                newest = str(uuid.uuid4())
                await asyncio.to_thread(produce_results, txn_producer, topic, ok(newest))
                assert await eventually_cached(narrow, newest)
                assert narrow.stats()["results"] == 1
            finally:
                await narrow.close()
        finally:
            await first.close()

    asyncio.run(main())


@pytest.mark.usefixtures("ensured_topics")
def test_too_many_waiting_past_the_bound(kafka_settings: KafkaSettings) -> None:
    from gateway.reply_router import TooManyWaiting

    async def main() -> None:
        router = ReplyRouter(kafka_settings, max_waiting=3)
        await router.start()
        try:
            async with router.waiting("a"), router.waiting("b"), router.waiting("c"):
                with pytest.raises(TooManyWaiting):
                    await router.waiting("d").__aenter__()
                assert router.waiting_count() == 3
            async with router.waiting("d"):
                assert router.waiting_count() == 1
        finally:
            await router.close()

    asyncio.run(main())


def test_start_fails_in_bounded_time_without_a_results_topic(
    kafka_settings: KafkaSettings,
) -> None:
    settings = kafka_settings  # no ensured_topics: the results topic does not exist

    async def main() -> None:
        router = ReplyRouter(settings, start_timeout_s=1.5)
        started = time.monotonic()
        with pytest.raises(KafkaUnavailable, match="could not assign"):
            await router.start()
        assert time.monotonic() - started < 1.5 + SLACK_S  # its start timeout, not a hang
        assert not router._tail._thread.is_alive()  # type: ignore[union-attr]

    asyncio.run(main())


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` on the loop (the router updates state there) for up to ``timeout``."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        if predicate() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    return predicate()
