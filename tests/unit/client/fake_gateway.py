"""A scripted in-process gRPC server for the client's unit tests.

Each RPC answers from a queue of scripted outcomes: a response message, a
:class:`gateway.errors.GatewayError` (sent with its ``google.rpc`` details exactly as the real
gateway sends them), or for streams a list of items optionally ending in an error. Every call
is recorded with its request and metadata.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_status import rpc_status

from gateway.errors import GatewayError
from prgate.v1 import (
    command_service_pb2_grpc,
    query_service_pb2_grpc,
)

Outcome = Message | GatewayError | list[Message | GatewayError]


@dataclass
class Recorded:
    rpc: str
    request: Any
    metadata: dict[str, str]


@dataclass
class FakeGateway:
    """Serves both services on 127.0.0.1:<port>; ``script(rpc, *outcomes)`` queues answers."""

    port: int = 0
    calls: list[Recorded] = field(default_factory=list)
    _outcomes: dict[str, deque[Outcome]] = field(default_factory=lambda: defaultdict(deque))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: grpc.Server | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def script(self, rpc: str, *outcomes: Outcome) -> None:
        with self._lock:
            self._outcomes[rpc].extend(outcomes)

    def calls_of(self, rpc: str) -> list[Recorded]:
        return [c for c in self.calls if c.rpc == rpc]

    def start(self) -> FakeGateway:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = _Handler(self)
        command_service_pb2_grpc.add_PullRequestCommandServiceServicer_to_server(handler, server)
        query_service_pb2_grpc.add_PullRequestQueryServiceServicer_to_server(handler, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def _next(self, rpc: str, request: Any, context: grpc.ServicerContext) -> Outcome:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        with self._lock:
            self.calls.append(Recorded(rpc, request, metadata))
            queue = self._outcomes[rpc]
            if not queue:
                raise AssertionError(f"no scripted outcome left for {rpc}")
            return queue.popleft()


def _abort(context: grpc.ServicerContext, error: GatewayError) -> None:
    context.abort_with_status(rpc_status.to_status(error.status))


class _Handler(
    command_service_pb2_grpc.PullRequestCommandServiceServicer,
    query_service_pb2_grpc.PullRequestQueryServiceServicer,
):
    def __init__(self, fake: FakeGateway) -> None:
        self._fake = fake

    def _unary(self, rpc: str, request: Any, context: grpc.ServicerContext) -> Any:
        outcome = self._fake._next(rpc, request, context)
        if isinstance(outcome, GatewayError):
            _abort(context, outcome)
        return outcome

    def _stream(self, rpc: str, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        outcome = self._fake._next(rpc, request, context)
        items = outcome if isinstance(outcome, list) else [outcome]
        for item in items:
            if isinstance(item, GatewayError):
                _abort(context, item)
            yield item

    def __getattribute__(self, name: str) -> Any:
        # Every RPC of both services goes through _unary or _stream by its name.
        if name in ("WatchCommand", "WatchPullRequest"):
            return lambda request, context: self._stream(name, request, context)
        if name[:1].isupper():
            return lambda request, context: self._unary(name, request, context)
        return object.__getattribute__(self, name)
