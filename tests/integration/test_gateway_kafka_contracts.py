"""The Kafka adapters pass the ports' contract suites against the real broker, like the unit
tests' fakes do (tests/unit/gateway/test_fakes_contract.py).

Inputs go where the processor writes them (results and snapshots are produced to their
topics), outputs are read where the processor reads them (the commands topic).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.kafka import consume_all, headers_of, produce

from gateway.producer import CommandProducer
from gateway.read_model import ReadModel, ReadModelState
from gateway.reply_router import ReplyRouter
from prgate.kafka.contract import (
    HEADER_CORRELATION_ID,
    HEADER_MESSAGE_TYPE,
    HEADER_REPLY_TO,
    HEADER_TRACEPARENT,
    TYPE_COMMAND_RESULT,
    TYPE_PULL_REQUEST,
    Topics,
)
from prgate.kafka.settings import KafkaSettings
from prgate.state import StoreMemory, StoreResources
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from tests.contracts.command_sender import Broker, CommandSenderContract, Delivered
from tests.contracts.pull_request_view import PullRequestViewContract
from tests.contracts.result_source import ResultSourceContract

WAIT_S = 15.0


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` on the loop (the adapters apply records there) for up to WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S}s: {what}")
        await asyncio.sleep(0.02)


class KafkaFixtures:
    """Binds the test's broker settings, with its own topics created, to the instance."""

    kafka: KafkaSettings

    @pytest.fixture(autouse=True)
    def _topics(self, kafka_settings: KafkaSettings, ensured_topics: Topics) -> None:
        self.kafka = kafka_settings


@dataclass
class ProducerFeed:
    sender: CommandProducer
    kafka: KafkaSettings

    async def delivered(self, count: int) -> list[Delivered]:
        records = await asyncio.to_thread(
            consume_all, self.kafka, self.kafka.topics.commands, expected=count, timeout=WAIT_S
        )
        delivered = []
        for record in records[:count]:
            headers = headers_of(record)
            envelope = CommandEnvelope.FromString(record.value() or b"")
            assert headers[HEADER_CORRELATION_ID] == envelope.command_id
            delivered.append(
                Delivered(envelope, headers[HEADER_REPLY_TO], headers.get(HEADER_TRACEPARENT))
            )
        return delivered


class TestCommandProducer(KafkaFixtures, CommandSenderContract):
    @asynccontextmanager
    async def feed(self, broker: Broker = "up") -> AsyncIterator[ProducerFeed]:
        kafka = self.kafka
        if broker != "up":
            # Nothing listens on port 1; the producer gives up on a record after its
            # delivery timeout (message.timeout.ms).
            kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="t-nowhere.")
        delivery_timeout_ms = 500 if broker == "failing" else 60_000
        producer = CommandProducer(kafka, delivery_timeout_ms=delivery_timeout_ms)
        await producer.start()
        try:
            yield ProducerFeed(producer, kafka)
        finally:
            await producer.close(timeout=1.0 if broker == "up" else 0.3)


@dataclass
class RouterFeed:
    source: ReplyRouter
    kafka: KafkaSettings

    async def arrive(self, *results: CommandResult) -> None:
        before = self.source.stats()["results"]
        records = [
            (
                result.command_id,
                result.SerializeToString(),
                [
                    (HEADER_CORRELATION_ID, result.command_id),
                    (HEADER_MESSAGE_TYPE, TYPE_COMMAND_RESULT),
                ],
            )
            for result in results
        ]
        await asyncio.to_thread(produce, self.kafka, self.kafka.topics.results, records)
        await until(
            lambda: self.source.stats()["results"] >= before + len(results), "results routed"
        )


class TestReplyRouter(KafkaFixtures, ResultSourceContract):
    @asynccontextmanager
    async def feed(self, *, max_waiting: int = 100) -> AsyncIterator[RouterFeed]:
        router = ReplyRouter(self.kafka, max_waiting=max_waiting)
        await router.start()
        try:
            await until(router.caught_up, "router caught up")
            yield RouterFeed(router, self.kafka)
        finally:
            await router.close()


@dataclass
class ReadModelFeed:
    view: ReadModel
    kafka: KafkaSettings

    async def _write(self, records: list[tuple[str, bytes | None]]) -> None:
        before = self.view.stats()["records"]
        await asyncio.to_thread(
            produce,
            self.kafka,
            self.kafka.topics.pull_requests,
            [(key, value, [(HEADER_MESSAGE_TYPE, TYPE_PULL_REQUEST)]) for key, value in records],
        )
        await until(
            lambda: self.view.stats()["records"] >= before + len(records), "records applied"
        )

    async def snapshots(self, *entities: PullRequest) -> None:
        await self._write([(e.pull_request_id, e.SerializeToString()) for e in entities])

    async def tombstone(self, pull_request_id: str) -> None:
        await self._write([(pull_request_id, None)])


class TestReadModel(KafkaFixtures, PullRequestViewContract):
    @asynccontextmanager
    async def feed(self) -> AsyncIterator[ReadModelFeed]:
        model = ReadModel(self.kafka)
        await model.start()
        try:
            assert await model.wait_caught_up(WAIT_S)
            yield ReadModelFeed(model, self.kafka)
        finally:
            await model.close()


class TestStoredReadModel(KafkaFixtures, PullRequestViewContract):
    """The same contract with the read model's table in a RocksDB store (PRGATE_STATE_DIR) and
    a decoded-entity cache of 2, so most reads go to RocksDB."""

    @pytest.fixture(autouse=True)
    def _state_dir(self, tmp_path: Path) -> None:
        self.state_dir = tmp_path / "state"

    @asynccontextmanager
    async def feed(self) -> AsyncIterator[ReadModelFeed]:
        resources = StoreResources(StoreMemory(1 << 20, 1 << 20))
        model = ReadModel(self.kafka, state=ReadModelState(self.state_dir, resources, 2))
        await model.start()
        try:
            assert await model.wait_caught_up(WAIT_S)
            yield ReadModelFeed(model, self.kafka)
        finally:
            await model.close()
