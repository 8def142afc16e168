"""Run grpc.aio servicers under grpcio-testing, which only calls synchronous handlers.

grpc_testing invokes ``handler(request, context)`` on its own threads. The bridge runs the
async servicer method on one event loop thread and hands grpc_testing an adapter context:
``await context.abort(code, details)`` becomes set_code/set_details (trailing metadata, with
the google.rpc status details, was already set) and ends the call the way aio's abort does;
set_code/set_details (a refusal without raising) pass through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor


class _Aborted(Exception):
    pass


class AioContext:
    """The subset of grpc.aio.ServicerContext our servicers use, over grpc_testing's context."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def invocation_metadata(self) -> Any:
        return self._inner.invocation_metadata()

    def time_remaining(self) -> float | None:
        remaining: float | None = self._inner.time_remaining()
        return remaining

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._inner.set_trailing_metadata(metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._inner.set_code(code)

    def set_details(self, details: str) -> None:
        self._inner.set_details(details)

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> None:
        if trailing_metadata:
            self._inner.set_trailing_metadata(trailing_metadata)
        self._inner.set_code(code)
        self._inner.set_details(details)
        raise _Aborted()


class LoopThread:
    """An asyncio loop on a daemon thread, for fakes and servicers to live on."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, fn: Callable[[], Any]) -> Any:
        async def invoke() -> Any:
            return fn()

        return self.run(invoke())

    def close(self) -> None:
        """Cancel what still runs (e.g. an abandoned stream), then stop the loop."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def sync_servicer(servicer: Any, service: ServiceDescriptor, loop: LoopThread) -> Any:
    """An object with one synchronous method per RPC that drives the async servicer."""

    class Bridge:
        pass

    bridge = Bridge()
    for method in service.methods:
        impl = getattr(servicer, method.name)
        if method.server_streaming:
            setattr(bridge, method.name, _stream(impl, loop))
        else:
            setattr(bridge, method.name, _unary(impl, loop))
    return bridge


def _unary(impl: Any, loop: LoopThread) -> Callable[[Any, Any], Any]:
    def handler(request: Any, context: Any) -> Any:
        try:
            return loop.run(impl(request, AioContext(context)))
        except _Aborted:
            return None

    return handler


def _stream(impl: Any, loop: LoopThread) -> Callable[[Any, Any], Iterator[Any]]:
    def handler(request: Any, context: Any) -> Iterator[Any]:
        agen: AsyncIterator[Any] = impl(request, AioContext(context))
        while True:
            try:
                yield loop.run(agen.__anext__())
            except (StopAsyncIteration, _Aborted, concurrent.futures.CancelledError):
                return

    return handler
