"""The asyncio client: :class:`AsyncClient`, the same API as :class:`Client`, awaited.

async with AsyncClient("127.0.0.1:50051") as client:
    receipt = await client.merge(pr_id, "bob")
    async for state in client.watch_command(receipt.command_id):
        ...
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio

from prgate.client import requests
from prgate.client.commands import CommandMethods
from prgate.client.connection import DEFAULT_TARGET, DEFAULT_TIMEOUT, ChannelOptions, Connection
from prgate.client.errors import DeadlineExceeded, error_for, error_from_result, error_from_rpc
from prgate.client.requests import TERMINAL, CommandCall, Status
from prgate.client.retry import RetryEvent, RetryPolicy, remaining
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import pull_request_pb2, query_service_pb2, query_service_pb2_grpc

T = TypeVar("T")


class AsyncClient(CommandMethods[Awaitable[svc.CommandReceipt]]):
    """A typed asyncio client (grpc.aio). Create it inside the event loop that uses it.

    Arguments as for :class:`prgate.client.Client`; ``channel`` must be a ``grpc.aio`` channel.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        options: ChannelOptions = (),
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.connection = Connection(target, credentials, token, tuple(options))
        self._owns_channel = channel is None
        if channel is None:
            channel_options = self.connection.channel_options()
            channel = (
                grpc.aio.secure_channel(target, credentials, channel_options)
                if credentials is not None
                else grpc.aio.insecure_channel(target, channel_options)
            )
        self._channel = channel
        self._metadata = self.connection.metadata()
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._on_retry = on_retry
        self._commands = svc_grpc.PullRequestCommandServiceStub(channel)
        self._queries = query_service_pb2_grpc.PullRequestQueryServiceStub(channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Close the channel (if the client created it). ``close`` is the command."""
        if self._owns_channel:
            await self._channel.close(grace=None)

    # -- retries ----------------------------------------------------------------------------

    async def _retrying(
        self, method: str, attempt: Callable[[], Awaitable[T]], idempotency_key: str = ""
    ) -> T:
        number = 1
        while True:
            try:
                return await attempt()
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, idempotency_key=idempotency_key)
                if not self._retry.should_retry(error, number):
                    raise error from exc
                delay = self._retry.delay(number, error)
                if self._on_retry is not None:
                    self._on_retry(RetryEvent(method, number, error, delay))
            await asyncio.sleep(delay)
            number += 1

    async def _stream(
        self,
        method: str,
        open_call: Callable[[float | None], Any],
        fresh: Callable[[Any], bool],
        timeout: float | None,
    ) -> AsyncIterator[Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        number = 1
        while True:
            call = open_call(remaining(deadline))
            try:
                async for item in call:
                    if fresh(item):
                        number = 1
                        yield item
                return
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
                if not self._retry.should_retry(error, number):
                    raise error from exc
                delay = self._retry.delay(number, error)
                if self._on_retry is not None:
                    self._on_retry(RetryEvent(method, number, error, delay))
            finally:
                call.cancel()
            await asyncio.sleep(delay)
            number += 1

    # -- commands -----------------------------------------------------------------------------

    async def _send(self, call: CommandCall, timeout: float | None) -> svc.CommandReceipt:
        rpc = getattr(self._commands, call.rpc)
        seconds = self._timeout if timeout is None else timeout
        response = await self._retrying(
            call.rpc,
            lambda: rpc(call.request, timeout=seconds, metadata=self._metadata),
            call.idempotency_key,
        )
        receipt: svc.CommandReceipt = response.receipt
        return receipt

    async def watch_command(
        self, command_id: str, *, timeout: float | None = None
    ) -> AsyncIterator[svc.CommandReceipt]:
        """The command's states: ACCEPTED, then one terminal state (with the result)."""
        request = svc.WatchCommandRequest(command_id=command_id)
        seen: set[int] = set()

        def fresh(item: Any) -> bool:
            if item.receipt.state in seen:
                return False
            seen.add(item.receipt.state)
            return True

        async for item in self._stream(
            "WatchCommand",
            lambda left: self._commands.WatchCommand(
                request, timeout=left, metadata=self._metadata
            ),
            fresh,
            timeout,
        ):
            receipt: svc.CommandReceipt = item.receipt
            yield receipt

    async def wait_command(
        self, command_id: str, *, timeout: float | None = None, raise_on_rejection: bool = True
    ) -> svc.CommandReceipt:
        """Follow a command to its terminal receipt (see :meth:`Client.wait_command`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                async for receipt in self.watch_command(command_id, timeout=remaining(deadline)):
                    if receipt.state in TERMINAL:
                        error = error_from_result(receipt.result)
                        if error is not None and raise_on_rejection:
                            raise error
                        return receipt
            except DeadlineExceeded:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            raise error_for(grpc.StatusCode.UNKNOWN, "the watch ended before a terminal state")

    # -- queries ------------------------------------------------------------------------------

    async def get(
        self, pull_request_id: str, *, timeout: float | None = None
    ) -> pull_request_pb2.PullRequest:
        request = query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id)
        seconds = self._timeout if timeout is None else timeout
        response = await self._retrying(
            "GetPullRequest",
            lambda: self._queries.GetPullRequest(request, timeout=seconds, metadata=self._metadata),
        )
        found: pull_request_pb2.PullRequest = response.pull_request
        return found

    async def watch_pull_request(
        self, pull_request_id: str, *, timeout: float | None = None
    ) -> AsyncIterator[pull_request_pb2.PullRequest]:
        """The current snapshot, then every new version (each version once)."""
        request = query_service_pb2.WatchPullRequestRequest(pull_request_id=pull_request_id)
        last = [0]

        def fresh(item: Any) -> bool:
            if item.pull_request.version <= last[0]:
                return False
            last[0] = item.pull_request.version
            return True

        async for item in self._stream(
            "WatchPullRequest",
            lambda left: self._queries.WatchPullRequest(
                request, timeout=left, metadata=self._metadata
            ),
            fresh,
            timeout,
        ):
            pull_request: pull_request_pb2.PullRequest = item.pull_request
            yield pull_request

    async def list_page(
        self,
        repository: str = "",
        status: Status | str | None = None,
        page_size: int = 100,
        page_token: str = "",
        *,
        timeout: float | None = None,
    ) -> query_service_pb2.ListPullRequestsResponse:
        """One page; its ``next_page_token`` is empty on the last page."""
        request = requests.list_request(repository, status, page_size, page_token)
        seconds = self._timeout if timeout is None else timeout
        response: query_service_pb2.ListPullRequestsResponse = await self._retrying(
            "ListPullRequests",
            lambda: self._queries.ListPullRequests(
                request, timeout=seconds, metadata=self._metadata
            ),
        )
        return response

    async def list(
        self,
        repository: str = "",
        status: Status | str | None = None,
        page_size: int = 100,
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[pull_request_pb2.PullRequest]:
        """Every matching pull request, page after page as the caller iterates."""
        token = ""
        while True:
            page = await self.list_page(repository, status, page_size, token, timeout=timeout)
            for pull_request in page.pull_requests:
                yield pull_request
            token = page.next_page_token
            if not token:
                return
