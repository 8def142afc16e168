"""A gRPC proxy in front of a real gateway that loses one answer: the first attempt of a chosen
method is passed to the gateway (which carries the command out), then its answer is dropped
and the caller gets UNAVAILABLE, as when a connection breaks after the server acted. Every
other call, health watches included, is relayed unchanged (messages as bytes, metadata,
status, trailing details).

It records every attempt of the chosen method (its request bytes and metadata), so a test can
show that the client's service config retried the call, with the same request (the same
idempotency key), and what the dropped answer was.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

# Metadata gRPC itself sets: not the application's to relay.
_TRANSPORT_KEYS = ("user-agent", "content-type", "te", "accept-encoding")


def _relayable(metadata: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (key, value)
        for key, value in metadata or ()
        if not key.startswith((":", "grpc-")) or key == "grpc-status-details-bin"
        if key not in _TRANSPORT_KEYS
    )


@dataclass
class Attempt:
    request: bytes
    metadata: dict[str, str]
    dropped_answer: bytes | None = None


@dataclass
class UnavailableProxy:
    """Listening on ``port`` (127.0.0.1), relaying to ``upstream`` (host:port)."""

    upstream: str
    method: str  # e.g. /prgate.v1.PullRequestCommandService/ApprovePullRequest
    port: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None

    async def _relay(self, requests: AsyncIterator[bytes], context: Any, method: str) -> Any:
        async with grpc.aio.insecure_channel(self.upstream) as channel:
            call = channel.stream_stream(method)(metadata=_relayable(context.invocation_metadata()))
            if method == self.method:
                request = b"".join([r async for r in requests])
                headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
                attempt = Attempt(request, headers)
                self.attempts.append(attempt)
                await call.write(request)
                await call.done_writing()
                if len(self.attempts) == 1:  # the gateway acts; its answer is lost
                    answers = [r async for r in call]
                    attempt.dropped_answer = answers[0] if answers else None
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE, "proxy: the connection broke (test)"
                    )
            else:

                async def pump() -> None:
                    async for request in requests:
                        await call.write(request)
                    await call.done_writing()

                pumping = asyncio.ensure_future(pump())
            try:
                await context.send_initial_metadata(_relayable(await call.initial_metadata()))
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError:
                pass
            if method != self.method:
                pumping.cancel()
            code = await call.code()
            trailing = _relayable(await call.trailing_metadata())
            if code != grpc.StatusCode.OK:
                await context.abort(code, await call.details() or "", trailing)
            context.set_trailing_metadata(trailing)

    def _handler(self) -> grpc.GenericRpcHandler:
        relay = self._relay

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
                method = details.method

                async def behavior(requests: AsyncIterator[bytes], context: Any) -> Any:
                    async for response in relay(requests, context, method):
                        yield response

                return grpc.stream_stream_rpc_method_handler(behavior)

        return Handler()

    async def _serve(self, started: threading.Event) -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([self._handler()])
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        started.set()
        await self._stop.wait()
        await server.stop(0)

    def stop(self) -> None:
        """Ends the proxy (from any thread)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)


@contextlib.contextmanager
def running(upstream: str, method: str) -> Iterator[UnavailableProxy]:
    """The proxy serving on its own thread and event loop until the generator is closed."""
    proxy = UnavailableProxy(upstream, method)
    started = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(proxy._serve(started)), daemon=True)
    thread.start()
    assert started.wait(30), "the proxy did not start"
    try:
        yield proxy
    finally:
        proxy.stop()
        thread.join(30)
