"""The asyncio client: :class:`AsyncClient`, the same API as :class:`Client`, awaited.

async with AsyncClient("127.0.0.1:50051") as client:
    receipt = await client.merge(pr_id, "bob")
    async for state in client.watch_command(receipt.command_id):
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from prgate.client import streams
from prgate.client.base import ClientBase
from prgate.client.connection import Connection
from prgate.client.requests import Unary, Watch
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import pull_request_pb2, query_service_pb2


class AsyncClient(
    ClientBase[
        Awaitable[svc.CommandReceipt],
        Awaitable[pull_request_pb2.PullRequest],
        Awaitable[query_service_pb2.ListPullRequestsResponse],
        AsyncIterator[svc.CommandReceipt],
        AsyncIterator[pull_request_pb2.PullRequest],
        grpc.aio.Channel,
    ]
):
    """A typed asyncio client (grpc.aio). Create it inside the event loop that uses it.

    Arguments as for :class:`prgate.client.Client`; ``channel`` must be a ``grpc.aio`` channel.
    """

    def _open_channel(self, connection: Connection) -> grpc.aio.Channel:
        options = connection.channel_options()
        if connection.credentials is None:
            return grpc.aio.insecure_channel(connection.target, options)
        return grpc.aio.secure_channel(connection.target, connection.credentials, options)

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

    # -- drivers (see prgate.client.base) ------------------------------------------------------

    async def _unary(self, call: Unary) -> Any:
        attempts = self._attempts(call.rpc, call.idempotency_key)
        while True:
            try:
                return self._answered(call, await self._attempt(call))
            except grpc.RpcError as exc:
                if self._token_refused(call.request, exc):
                    continue
                delay = self._next_delay(attempts.failed, call.request, exc)
            await asyncio.sleep(delay)

    async def _stream(self, watch: Watch) -> AsyncIterator[Any]:
        resume = self._resume(watch)
        while True:
            stream = self._open(resume)
            try:
                async for item in stream:
                    if resume.fresh(item):
                        yield watch.unpack(item)
                return
            except grpc.RpcError as exc:
                refused = self._token_refused(watch.request, exc)
                delay = 0.0 if refused else self._next_delay(resume.failed, watch.request, exc)
            finally:
                stream.cancel()
            await asyncio.sleep(delay)

    async def _first(self, watch: Watch, pick: Callable[[Any], Any]) -> Any:
        async for item in self._stream(watch):
            if (picked := pick(item)) is not None:
                return picked
        raise streams.watch_ended()

    async def _pages(self, page: Callable[[str], Any]) -> AsyncIterator[Any]:
        token: str | None = ""
        while token is not None:
            response = await page(token)
            for pull_request in response.pull_requests:
                yield pull_request
            token = response.next_page_token or None
