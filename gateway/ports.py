"""What admission and the servicers need from the Kafka side, as protocols and their errors.

The Kafka adapters implement them (CommandProducer, ReplyRouter, ReadModel), and so do the
in-memory fakes of the unit tests. One contract test suite per port (tests/contracts/) states
the behaviour both must show; each adapter and each fake runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from prgate.v1 import commands_pb2, pull_request_pb2, refusals_pb2, results_pb2


class KafkaUnavailable(Exception):
    """Kafka could not take a record (or could not be reached); the message says what failed."""


class AckTimeout(KafkaUnavailable):
    """No acknowledgement within the caller's time: the record may still be delivered later."""


class TooManyWaiting(Exception):
    """Every waiting slot is taken; the gateway answers RESOURCE_EXHAUSTED."""


class CommandSender(Protocol):
    async def send(
        self,
        envelope: commands_pb2.CommandEnvelope,
        *,
        reply_to: str,
        timeout: float,
        traceparent: str | None = None,
    ) -> None:
        """Deliver ``envelope`` to the processor; return once it is durable (acknowledged).

        Records of one pull request are delivered in the order they were sent, with the
        results topic ``reply_to`` and the W3C ``traceparent`` (when given) beside them.
        Raises AckTimeout when ``timeout`` seconds pass without an acknowledgement (the
        record may still be delivered), KafkaUnavailable when it cannot be delivered at all.
        """
        ...


class ResultWaiter(Protocol):
    async def result(self, timeout: float | None) -> results_pb2.CommandResult | None:
        """The command's result (the first one, never a later duplicate answer); None when
        it does not arrive within ``timeout`` seconds. May be asked again."""
        ...


class ResultSource(Protocol):
    def waiting(self, command_id: str) -> AbstractAsyncContextManager[ResultWaiter]:
        """A slot for one command id's result; enter it before producing the command.

        Entering raises TooManyWaiting when every slot is taken; leaving frees the slot.
        Several slots may wait on one id; a result that arrived earlier is found at once.
        """
        ...

    def lookup(self, command_id: str) -> results_pb2.CommandResult | None:
        """The recent result of ``command_id`` (the first answer, not a duplicate), or None."""
        ...

    def add_listener(self, callback: Callable[[results_pb2.CommandResult], None]) -> None:
        """Call ``callback`` on the event loop with every result in arrival order, duplicates
        included; a failing listener does not keep the others from it."""
        ...


class Subscription(Protocol):
    """New versions of one pull request, as an async iterator; close() stops it."""

    def __aiter__(self) -> AsyncIterator[pull_request_pb2.PullRequest]: ...

    def close(self) -> None: ...


class PullRequestView(Protocol):
    """The newest snapshot of every pull request, kept on the event loop."""

    def caught_up(self) -> bool:
        """True once the view has read what existed when it started."""
        ...

    def get(self, pull_request_id: str) -> pull_request_pb2.PullRequest | None:
        """The current entity: the highest version seen (an older snapshot never replaces it)."""
        ...

    def list(
        self, *, repository: str = "", status: int = 0, after: str = "", limit: int = 100
    ) -> list[pull_request_pb2.PullRequest]:
        """Up to ``limit`` pull requests whose id sorts after ``after`` ("" = from the start),
        in id order, of ``repository`` (compared case-insensitively; "" = any) and ``status``
        (0 = any). A negative ``limit`` is a ValueError. Pages, their byte bound and their
        tokens are the query service's (gateway/query_service.py, gateway/page_tokens.py).
        """
        ...

    def subscribe(self, pull_request_id: str) -> Subscription:
        """The current entity (if any), then each newer version once, until close()."""
        ...

    def apply_result(self, result: results_pb2.CommandResult) -> None:
        """Fold a successful result's events onto the entity when they continue its version
        (read-your-writes before the snapshot arrives); anything else is ignored."""
        ...

    async def wait_for_version(self, pull_request_id: str, version: int, timeout: float) -> bool:
        """Wait until the entity has at least ``version``; False after ``timeout`` seconds."""
        ...


class RefusalLog(Protocol):
    def record(self, refusal: refusals_pb2.CommandRefusal, traceparent: str | None) -> None:
        """Hand a synchronous refusal to the audit trail, best effort.

        Never blocks and never raises: a refusal must not be delayed or failed by its record.
        A record that cannot be kept (queue full, Kafka away) is dropped and counted.
        """
        ...


class NoRefusalLog:
    """A RefusalLog that keeps nothing (tests, and gateways without an audit trail)."""

    def record(self, refusal: refusals_pb2.CommandRefusal, traceparent: str | None) -> None:
        pass
