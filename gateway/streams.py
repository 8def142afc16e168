"""Open response streams, and ending them from outside with a status instead of cutting them.

Two things must end a stream that its handler would keep open: the gateway's shutdown (after
the drain window, every stream ends UNAVAILABLE with a RetryInfo, so clients reconnect to
another gateway) and a revoked token (the streams it opened end UNAUTHENTICATED).
:class:`OpenStreams` is the innermost server interceptor: it wraps every response-streaming
handler (ours and the libraries': health ``Watch``, the reflection stream) so the call can
be ended with a :class:`~gateway.refusals.Refusal`'s status and details.

How a stream is ended: while its task waits inside the handler (for the next update), the
task is cancelled and the wrapper turns that cancellation into the status. While grpc sends
a response (the wrapper is suspended at ``yield``) nothing is interrupted: the wrapper sees
the request when the send is done. A cancellation that is not ours (the client went away)
passes through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from gateway import errors
from gateway.handlers import behavior_of, replaced, responses, writes_with_context
from gateway.refusals import Refusal

log = logging.getLogger(__name__)


@dataclass(eq=False)
class OpenStream:
    """One response stream being served; ``tag`` is what :class:`OpenStreams` was told at its
    start (the token digest of its caller when authentication is on)."""

    method: str
    tag: object
    task: asyncio.Task[Any] | None
    inside: bool = False  # the task waits inside the handler, not in a send
    ending: Refusal | None = None

    def end(self, refusal: Refusal) -> bool:
        """Ask the stream to end with ``refusal``; False if it is already ending."""
        if self.ending is not None:
            return False
        self.ending = refusal
        if self.inside and self.task is not None:
            self.task.cancel()
        return True


class OpenStreams(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Every open response stream of the server; ends all or some with a status.

    ``tag_of()`` is called at each stream's start, inside the outer interceptors (so it may
    read what authentication set for the call).
    """

    def __init__(self, tag_of: Callable[[], object] = lambda: None) -> None:
        self._tag_of = tag_of
        self._streams: set[OpenStream] = set()
        self._closing: Refusal | None = None

    def count(self) -> int:
        """How many streams are open. (Not ``__len__``: grpc.aio skips a falsy interceptor.)"""
        return len(self._streams)

    def end_all(self, refusal: Refusal) -> int:
        """End every open stream, and each one that starts from now on, with ``refusal``."""
        self._closing = refusal
        return self.end_where(lambda _tag: True, refusal)

    def end_where(self, predicate: Callable[[object], bool], refusal: Refusal) -> int:
        """End the open streams whose tag ``predicate`` accepts; returns how many."""
        ended = sum(1 for s in list(self._streams) if predicate(s.tag) and s.end(refusal))
        if ended:
            log.info("streams_ended", extra={"count": ended, "code": refusal.code_name})
        return ended

    def _open(self, method: str) -> OpenStream:
        stream = OpenStream(method, self._tag_of(), asyncio.current_task())
        self._streams.add(stream)
        if self._closing is not None:
            stream.end(self._closing)
        return stream

    def _ended(self, stream: OpenStream) -> bool:
        """After a cancellation: True if it was ours (the task is running normally again)."""
        if stream.ending is None:
            return False
        if stream.task is not None:
            stream.task.uncancel()
        return True

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        handler = await continuation(handler_call_details)
        if handler is None or not handler.response_streaming:
            return handler
        method = handler_call_details.method
        inner = behavior_of(handler)
        if writes_with_context(inner):

            async def writer(request: Any, context: Any) -> None:
                stream = self._open(method)
                try:
                    if stream.ending is None:
                        stream.inside = True
                        try:
                            await inner(request, context)
                        except asyncio.CancelledError:
                            if not self._ended(stream):
                                raise
                        finally:
                            stream.inside = False
                    if stream.ending is not None:
                        await errors.abort(context, stream.ending)
                finally:
                    self._streams.discard(stream)

            return replaced(handler, writer)

        async def generator(request: Any, context: Any) -> AsyncIterator[Any]:
            stream = self._open(method)
            source = responses(inner(request, context))
            try:
                while stream.ending is None:
                    stream.inside = True
                    try:
                        item = await anext(source)
                    except StopAsyncIteration:
                        return
                    except asyncio.CancelledError:
                        if not self._ended(stream):
                            raise
                        break
                    finally:
                        stream.inside = False
                    if stream.ending is not None:
                        break
                    yield item
                await source.aclose()
                assert stream.ending is not None
                await errors.abort(context, stream.ending)
            finally:
                self._streams.discard(stream)

        return replaced(handler, generator)
