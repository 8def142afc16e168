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
from typing import Any

import grpc

from prgate.client import streams
from prgate.client.base import ClientBase
from prgate.client.connection import Connection
from prgate.client.requests import Unary, Watch
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import pull_request_pb2, query_service_pb2


class Client(
    ClientBase[
        svc.CommandReceipt,
        pull_request_pb2.PullRequest,
        query_service_pb2.ListPullRequestsResponse,
        Iterator[svc.CommandReceipt],
        Iterator[pull_request_pb2.PullRequest],
        grpc.Channel,
    ]
):
    """A typed, blocking client of the gateway's command and query services.

    ``target`` is ``host:port``; ``credentials`` (e.g. :func:`tls_credentials`) selects TLS,
    ``token`` adds a bearer token to every call, ``options`` are gRPC channel options.
    ``timeout`` is the default deadline of each unary attempt, ``retry`` bounds the retries of
    UNAVAILABLE, and ``on_retry`` is called before each retry (for logs and tests). Pass
    ``channel`` to use an existing channel (the client then does not close it). ``session``
    (:class:`~prgate.client.session.Session`, default: a new one, as ``client.session``) keeps
    the consistency tokens of the answers and sends them on, so each call sees the client's
    own earlier writes on any gateway; share one between clients of different gateways.
    """

    def _open_channel(self, connection: Connection) -> grpc.Channel:
        options = connection.channel_options()
        if connection.credentials is None:
            return grpc.insecure_channel(connection.target, options)
        return grpc.secure_channel(connection.target, connection.credentials, options)

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

    # -- drivers (see prgate.client.base) ------------------------------------------------------

    def _unary(self, call: Unary) -> Any:
        attempts = self._attempts(call.rpc, call.idempotency_key)
        while True:
            try:
                return self._answered(call, self._attempt(call))
            except grpc.RpcError as exc:
                if self._token_refused(call.request, exc):
                    continue
                delay = self._next_delay(attempts.failed, call.request, exc)
            time.sleep(delay)

    def _stream(self, watch: Watch) -> Iterator[Any]:
        resume = self._resume(watch)
        while True:
            stream = self._open(resume)
            try:
                yield from map(watch.unpack, filter(resume.fresh, stream))
                return
            except grpc.RpcError as exc:
                refused = self._token_refused(watch.request, exc)
                delay = 0.0 if refused else self._next_delay(resume.failed, watch.request, exc)
            finally:
                stream.cancel()
            time.sleep(delay)

    def _first(self, watch: Watch, pick: Callable[[Any], Any]) -> Any:
        for item in self._stream(watch):
            if (picked := pick(item)) is not None:
                return picked
        raise streams.watch_ended()

    def _pages(self, page: Callable[[str], Any]) -> Iterator[Any]:
        token: str | None = ""
        while token is not None:
            response = page(token)
            yield from response.pull_requests
            token = response.next_page_token or None
