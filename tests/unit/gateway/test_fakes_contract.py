"""The unit tests' fakes pass the ports' contract suites, like the Kafka adapters do
(tests/integration/test_gateway_kafka_contracts.py): what the servicer tests learn from the
fakes holds for the real thing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from tests.contracts.command_sender import Broker, CommandSenderContract, Delivered
from tests.contracts.pull_request_view import PullRequestViewContract
from tests.contracts.result_source import ResultSourceContract
from tests.unit.gateway.fakes import FakeResults, FakeSender, FakeView


@dataclass
class FakeSenderFeed:
    sender: FakeSender

    async def delivered(self, count: int) -> list[Delivered]:
        return [Delivered(*record) for record in self.sender.records[:count]]


class TestFakeSender(CommandSenderContract):
    @asynccontextmanager
    async def feed(self, broker: Broker = "up") -> AsyncIterator[FakeSenderFeed]:
        sender = FakeSender(FakeResults(), processor=None)
        sender.ack_times_out = broker == "silent"
        sender.unavailable = broker == "failing"
        yield FakeSenderFeed(sender)


@dataclass
class FakeResultFeed:
    source: FakeResults

    async def arrive(self, *results: CommandResult) -> None:
        for result in results:
            self.source.publish(result)


class TestFakeResults(ResultSourceContract):
    @asynccontextmanager
    async def feed(self, *, max_waiting: int = 100) -> AsyncIterator[FakeResultFeed]:
        yield FakeResultFeed(FakeResults(max_waiting))


@dataclass
class FakeViewFeed:
    view: FakeView

    async def snapshots(self, *entities: PullRequest) -> None:
        for entity in entities:
            self.view.put(entity)

    async def tombstone(self, pull_request_id: str) -> None:
        self.view.delete(pull_request_id)


class TestFakeView(PullRequestViewContract):
    @asynccontextmanager
    async def feed(self) -> AsyncIterator[FakeViewFeed]:
        yield FakeViewFeed(FakeView())
