"""The CommandSender contract (gateway/ports.py): one suite for the producer and its fake.

Subclass :class:`CommandSenderContract` and implement :meth:`feed`: it yields a started sender
whose broker is up, silent (no answer within the call's timeout) or failing (the record cannot
be delivered), and a way to read what was delivered (the commands topic for
gateway.producer.CommandProducer, ``records`` for the unit tests' FakeSender).
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Literal, NamedTuple, Protocol

import pytest

from gateway.ports import AckTimeout, CommandSender, KafkaUnavailable
from prgate.v1.commands_pb2 import ApprovePullRequest, CommandEnvelope

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
RESULTS_TOPIC = "contract.command-results"
WAIT_S = 10.0  # bound on any wait for something that does happen

Broker = Literal["up", "silent", "failing"]


class Delivered(NamedTuple):
    """A command as the processor receives it: the envelope and what travels beside it."""

    envelope: CommandEnvelope
    reply_to: str
    traceparent: str | None


class SenderFeed(Protocol):
    """A sender under test and its output side."""

    sender: CommandSender

    async def delivered(self, count: int) -> list[Delivered]:
        """The first ``count`` commands delivered, in delivery order within a pull request
        (waits until that many are there, at most some seconds)."""
        ...


def envelope(pull_request_id: str = "pr-42", reviewer: str = "bob") -> CommandEnvelope:
    return CommandEnvelope(
        command_id=uuid.uuid4().hex,
        pull_request_id=pull_request_id,
        approve_pull_request=ApprovePullRequest(pull_request_id=pull_request_id, reviewer=reviewer),
    )


class CommandSenderContract(ABC):
    """What every CommandSender does."""

    @abstractmethod
    def feed(self, broker: Broker = "up") -> AbstractAsyncContextManager[SenderFeed]:
        """A started sender. ``silent``: nothing acknowledges or refuses a record for longer
        than any timeout here; ``failing``: a record is given up within a second."""

    def run(self, body: Callable[[SenderFeed], Awaitable[None]], broker: Broker = "up") -> None:
        async def main() -> None:
            async with self.feed(broker) as feed:
                await body(feed)

        asyncio.run(main())

    def test_an_acknowledged_command_is_delivered_with_its_reply_to_and_trace(self) -> None:
        async def body(feed: SenderFeed) -> None:
            traced, untraced = envelope("pr-1"), envelope("pr-2")
            await feed.sender.send(
                traced, reply_to=RESULTS_TOPIC, timeout=WAIT_S, traceparent=TRACEPARENT
            )
            await feed.sender.send(untraced, reply_to=RESULTS_TOPIC, timeout=WAIT_S)
            delivered = sorted(await feed.delivered(2), key=lambda d: d.envelope.pull_request_id)
            assert delivered == [
                Delivered(traced, RESULTS_TOPIC, TRACEPARENT),
                Delivered(untraced, RESULTS_TOPIC, None),
            ]

        self.run(body)

    def test_commands_of_one_pull_request_are_delivered_in_the_order_sent(self) -> None:
        async def body(feed: SenderFeed) -> None:
            sent = [envelope("pr-a" if i % 3 else "pr-b", reviewer=f"r{i}") for i in range(9)]
            for item in sent:
                await feed.sender.send(item, reply_to=RESULTS_TOPIC, timeout=WAIT_S)
            delivered = [d.envelope for d in await feed.delivered(len(sent))]
            for pull_request_id in ("pr-a", "pr-b"):
                assert [e for e in delivered if e.pull_request_id == pull_request_id] == [
                    e for e in sent if e.pull_request_id == pull_request_id
                ]

        self.run(body)

    def test_no_acknowledgement_within_the_timeout_is_ack_timeout(self) -> None:
        async def body(feed: SenderFeed) -> None:
            with pytest.raises(AckTimeout):
                await feed.sender.send(envelope(), reply_to=RESULTS_TOPIC, timeout=0.5)

        self.run(body, "silent")

    def test_a_command_that_cannot_be_delivered_is_unavailable_not_ack_timeout(self) -> None:
        async def body(feed: SenderFeed) -> None:
            with pytest.raises(KafkaUnavailable) as failed:
                await feed.sender.send(envelope(), reply_to=RESULTS_TOPIC, timeout=WAIT_S)
            assert not isinstance(failed.value, AckTimeout)

        self.run(body, "failing")
