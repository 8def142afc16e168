"""What the servicers need from the Kafka side, as protocols (fakes implement them in tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from prgate.v1 import commands_pb2, pull_request_pb2, results_pb2


class CommandSender(Protocol):
    async def send(
        self,
        envelope: commands_pb2.CommandEnvelope,
        *,
        reply_to: str,
        timeout: float,
        traceparent: str | None = None,
    ) -> None: ...


class ResultWaiter(Protocol):
    async def result(self, timeout: float | None) -> results_pb2.CommandResult | None: ...


class ResultSource(Protocol):
    def waiting(self, command_id: str) -> AbstractAsyncContextManager[ResultWaiter]: ...

    def lookup(self, command_id: str) -> results_pb2.CommandResult | None: ...

    def add_listener(self, callback: Callable[[results_pb2.CommandResult], None]) -> None: ...


class Subscription(Protocol):
    """New versions of one pull request, as an async iterator; close() stops it."""

    def __aiter__(self) -> AsyncIterator[pull_request_pb2.PullRequest]: ...

    def close(self) -> None: ...


class PullRequestView(Protocol):
    def caught_up(self) -> bool: ...

    def get(self, pull_request_id: str) -> pull_request_pb2.PullRequest | None: ...

    def list(
        self, *, repository: str = "", status: int = 0, page_size: int = 100, page_token: str = ""
    ) -> tuple[list[pull_request_pb2.PullRequest], str]: ...

    def subscribe(self, pull_request_id: str) -> Subscription: ...

    def apply_result(self, result: results_pb2.CommandResult) -> None: ...

    async def wait_for_version(
        self, pull_request_id: str, version: int, timeout: float
    ) -> bool: ...
