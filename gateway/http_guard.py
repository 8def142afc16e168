"""Bounds on what one HTTP client can make the Connect port (gateway/connect_http.py) hold.

:class:`RequestGuard` is the outermost ASGI layer of the port. For every request it:

- reads the whole request body before the Connect library sees it, at most
  ``message_limit`` bytes (plus a stream's 5-byte envelope) and for at most ``timeout_s``
  seconds. A larger body is answered ``resource_exhausted`` (HTTP 429, as Connect maps the
  code) and a body that does not arrive in time ``deadline_exceeded`` (HTTP 408), both as
  Connect error JSON, with ``connection: close``. Before a size refusal the rest of the body
  is read and dropped (up to :data:`DRAIN_LIMIT_BYTES`, within ``timeout_s``), so the client
  reads the answer instead of a connection reset in the middle of its upload (curl exit 55);
- gives each response message ``timeout_s`` to be taken by the client: a client that stops
  reading a stream (its TCP window full) ends the call, which frees its watcher and slot,
  instead of holding them for as long as the connection lives.

- refuses requests whose headers take more than :data:`HEADER_LIMIT_BYTES` in all (names and
  values), HTTP 431 with ``resource_exhausted``. hypercorn refuses (431, no body) headers that
  are still incomplete past 16 KiB (``h11_max_incomplete_size``), but accepts larger ones that
  arrive in one read; and it closes a connection whose headers take longer than its
  ``keep_alive_timeout`` (set to ``timeout_s``) to arrive.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# Read and dropped before a size refusal; a larger upload is cut (connection closed).
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
ENVELOPE_BYTES = 5  # a Connect streaming envelope's flags and length
# The request headers' names and values in all; gRPC's default metadata limit is 8 KiB.
HEADER_LIMIT_BYTES = 16 * 1024


class ClientNotReading(Exception):
    """A response message was not taken by the client within the guard's timeout."""


def content_length(scope: Scope) -> int | None:
    """The request's Content-Length; None when absent or not a number."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def answer(send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
    """A Connect unary error (JSON body) sent by the port itself, outside the library."""
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Body:
    """The request body as it was read: its bytes, or why it was not."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.read = 0  # bytes received, kept or dropped
        self.complete = False
        self.gone = False  # the client disconnected


class RequestGuard:
    """ASGI middleware: the bounds of the module docstring around ``app``."""

    def __init__(self, app: App, *, message_limit: int, timeout_s: float) -> None:
        """``message_limit``: the largest request message in bytes (``max_message_bytes``);
        ``timeout_s``: ``http_timeout_s``."""
        self._app = app
        self._message_limit = message_limit
        self._body_limit = message_limit + ENVELOPE_BYTES
        self._timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self._body_limit
        declared = content_length(scope)
        body = _Body()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        if declared is None or declared <= limit:
            await self._read(receive, body, deadline, keep=limit)
        if body.gone:
            return
        if body.read > limit or (declared is not None and declared > limit):
            size = declared if declared is not None else body.read
            if size <= DRAIN_LIMIT_BYTES:
                await self._read(receive, body, deadline, keep=0)
            log.info(
                "http_request_refused",
                extra={"path": scope.get("path", ""), "reason": "too_large", "bytes": size},
            )
            await answer(
                send,
                429,
                "resource_exhausted",
                f"the request body ({'at least ' if declared is None else ''}{size} bytes) is"
                f" over the limit of {self._message_limit} bytes (PRGATE_MAX_MESSAGE_BYTES; a"
                f" stream's 5-byte envelope comes on top)",
                close=not body.complete,
            )
            return
        if not body.complete:
            log.info(
                "http_request_refused",
                extra={"path": scope.get("path", ""), "reason": "body_timeout", "bytes": body.read},
            )
            await answer(
                send,
                408,
                "deadline_exceeded",
                f"the request body did not arrive within {self._timeout_s:g} s"
                f" ({body.read} bytes came; PRGATE_HTTP_TIMEOUT_S)",
                close=True,
            )
            return
        header_bytes = sum(len(name) + len(value) for name, value in scope.get("headers", ()))
        if header_bytes > HEADER_LIMIT_BYTES:
            log.info(
                "http_request_refused",
                extra={"path": scope.get("path", ""), "reason": "headers", "bytes": header_bytes},
            )
            await answer(
                send,
                431,
                "resource_exhausted",
                f"the request headers take {header_bytes} bytes, over the limit of"
                f" {HEADER_LIMIT_BYTES}",
            )
            return
        await self._app(scope, _replay(bytes(body.data), receive), self._timed(send))

    async def _read(self, receive: Receive, body: _Body, deadline: float, *, keep: int) -> None:
        """Receive body chunks until the body ends, the client leaves or ``deadline`` passes;
        keep them while the kept bytes stay within ``keep``."""
        loop = asyncio.get_running_loop()
        while not body.complete and not body.gone:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return
            if message["type"] == "http.disconnect":
                body.gone = True
                return
            chunk = message.get("body", b"")
            body.read += len(chunk)
            if body.read <= keep:
                body.data += chunk
            elif body.data:
                body.data.clear()  # over the limit: nothing of it is used
            body.complete = not message.get("more_body", False)
            if keep and body.read > keep:
                return

    def _timed(self, send: Send) -> Send:
        timeout_s = self._timeout_s
        broken = False

        async def timed_send(message: Message) -> None:
            nonlocal broken
            if broken:
                raise ClientNotReading("the client stopped reading the response")
            try:
                await asyncio.wait_for(send(message), timeout_s)
            except TimeoutError:
                broken = True
                log.info("http_client_not_reading", extra={"timeout_s": timeout_s})
                raise ClientNotReading(
                    f"the client took no response data for {timeout_s:g} s"
                ) from None

        return timed_send


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that answers ``body`` first, then what the connection says (a disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
