"""The blocking client: :class:`Client`.

with Client("127.0.0.1:50051") as client:
    receipt = client.open_pull_request("acme/widgets", "Add a widget", "ada", "feature/w", "main")
    client.approve(receipt.pull_request_id, "bob")
    ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import grpc

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


class Client(CommandMethods[svc.CommandReceipt]):
    """A typed, blocking client of the gateway's command and query services.

    ``target`` is ``host:port``; ``credentials`` (e.g. :func:`tls_credentials`) selects TLS,
    ``token`` adds a bearer token to every call, ``options`` are gRPC channel options.
    ``timeout`` is the default deadline of each unary attempt, ``retry`` bounds the retries of
    UNAVAILABLE, and ``on_retry`` is called before each retry (for logs and tests). Pass
    ``channel`` to use an existing channel (the client then does not close it).
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
        channel: grpc.Channel | None = None,
    ) -> None:
        self.connection = Connection(target, credentials, token, tuple(options))
        self._owns_channel = channel is None
        if channel is None:
            channel_options = self.connection.channel_options()
            channel = (
                grpc.secure_channel(target, credentials, channel_options)
                if credentials is not None
                else grpc.insecure_channel(target, channel_options)
            )
        self._channel = channel
        self._metadata = self.connection.metadata()
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._on_retry = on_retry
        self._commands = svc_grpc.PullRequestCommandServiceStub(channel)
        self._queries = query_service_pb2_grpc.PullRequestQueryServiceStub(channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Close the channel (if the client created it). ``close`` is the command."""
        if self._owns_channel:
            self._channel.close()

    # -- retries ----------------------------------------------------------------------------

    def _retrying(self, method: str, attempt: Callable[[], T], idempotency_key: str = "") -> T:
        number = 1
        while True:
            try:
                return attempt()
            except grpc.RpcError as exc:
                error = error_from_rpc(exc, idempotency_key=idempotency_key)
                if not self._retry.should_retry(error, number):
                    raise error from exc
                delay = self._retry.delay(number, error)
                if self._on_retry is not None:
                    self._on_retry(RetryEvent(method, number, error, delay))
            time.sleep(delay)
            number += 1

    def _stream(
        self,
        method: str,
        open_call: Callable[[float | None], Any],
        fresh: Callable[[Any], bool],
        timeout: float | None,
    ) -> Iterator[Any]:
        """Items of a server stream; after UNAVAILABLE, reopen it and skip what was seen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        number = 1
        while True:
            call = open_call(remaining(deadline))
            try:
                for item in call:
                    if fresh(item):
                        number = 1  # progress: the retry budget starts over
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
            time.sleep(delay)
            number += 1

    # -- commands -----------------------------------------------------------------------------

    def _send(self, call: CommandCall, timeout: float | None) -> svc.CommandReceipt:
        rpc = getattr(self._commands, call.rpc)
        seconds = self._timeout if timeout is None else timeout
        response = self._retrying(
            call.rpc,
            lambda: rpc(call.request, timeout=seconds, metadata=self._metadata),
            call.idempotency_key,
        )
        receipt: svc.CommandReceipt = response.receipt
        return receipt

    def watch_command(
        self, command_id: str, *, timeout: float | None = None
    ) -> Iterator[svc.CommandReceipt]:
        """The command's states: ACCEPTED, then one terminal state (with the result)."""
        request = svc.WatchCommandRequest(command_id=command_id)
        seen: set[int] = set()

        def fresh(item: Any) -> bool:
            if item.receipt.state in seen:
                return False
            seen.add(item.receipt.state)
            return True

        for item in self._stream(
            "WatchCommand",
            lambda left: self._commands.WatchCommand(
                request, timeout=left, metadata=self._metadata
            ),
            fresh,
            timeout,
        ):
            receipt: svc.CommandReceipt = item.receipt
            yield receipt

    def wait_command(
        self, command_id: str, *, timeout: float | None = None, raise_on_rejection: bool = True
    ) -> svc.CommandReceipt:
        """Follow a command to its terminal receipt.

        The gateway ends a watch that waited its own bound with DEADLINE_EXCEEDED; within
        ``timeout`` (None: no limit) this watches again. A REJECTED or FAILED command raises
        the exception a waiting command call would have raised, unless ``raise_on_rejection``
        is False.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                for receipt in self.watch_command(command_id, timeout=remaining(deadline)):
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

    def get(
        self, pull_request_id: str, *, timeout: float | None = None
    ) -> pull_request_pb2.PullRequest:
        request = query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id)
        seconds = self._timeout if timeout is None else timeout
        response = self._retrying(
            "GetPullRequest",
            lambda: self._queries.GetPullRequest(request, timeout=seconds, metadata=self._metadata),
        )
        found: pull_request_pb2.PullRequest = response.pull_request
        return found

    def watch_pull_request(
        self, pull_request_id: str, *, timeout: float | None = None
    ) -> Iterator[pull_request_pb2.PullRequest]:
        """The current snapshot, then every new version (each version once, also across
        reconnects). Runs until ``timeout`` (None: forever) or the caller stops iterating."""
        request = query_service_pb2.WatchPullRequestRequest(pull_request_id=pull_request_id)
        last = [0]

        def fresh(item: Any) -> bool:
            if item.pull_request.version <= last[0]:
                return False
            last[0] = item.pull_request.version
            return True

        for item in self._stream(
            "WatchPullRequest",
            lambda left: self._queries.WatchPullRequest(
                request, timeout=left, metadata=self._metadata
            ),
            fresh,
            timeout,
        ):
            pull_request: pull_request_pb2.PullRequest = item.pull_request
            yield pull_request

    def list_page(
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
        response: query_service_pb2.ListPullRequestsResponse = self._retrying(
            "ListPullRequests",
            lambda: self._queries.ListPullRequests(
                request, timeout=seconds, metadata=self._metadata
            ),
        )
        return response

    def list(
        self,
        repository: str = "",
        status: Status | str | None = None,
        page_size: int = 100,
        *,
        timeout: float | None = None,
    ) -> Iterator[pull_request_pb2.PullRequest]:
        """Every matching pull request, fetching page after page as the caller iterates."""
        token = ""
        while True:
            page = self.list_page(repository, status, page_size, token, timeout=timeout)
            yield from page.pull_requests
            token = page.next_page_token
            if not token:
                return
