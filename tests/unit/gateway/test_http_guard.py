"""gateway/http_guard.py as pure ASGI logic: what the guard reads, refuses and ends, with
scripted receive and send callables (the real port is attacked in
tests/e2e/test_connect_http_abuse.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.http_guard import ClientNotReading, RequestGuard

Message = dict[str, Any]


def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "path": "/prgate.v1.S/M", "headers": list(headers)}


def chunks(*parts: bytes, then_stall: bool = False) -> Callable[[], Awaitable[Message]]:
    """A receive giving ``parts`` as the body, then a disconnect (or nothing, ever)."""
    queue = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1 or then_stall}
        for i, part in enumerate(parts)
    ]

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        if then_stall:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    return receive


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.sent.append(message)

    def answer(self) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
        start, body = self.sent
        return start["status"], json.loads(body["body"]), dict(start["headers"])


class EchoApp:
    """Answers the body it was given; records it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, _scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coroutine, 30))  # a hang fails instead of blocking the run


def test_a_body_in_chunks_reaches_the_app_whole() -> None:
    app, sent = EchoApp(), Recorder()
    guard = RequestGuard(app, message_limit=100, timeout_s=5)
    run(guard(scope(), chunks(b"ab", b"cd", b"e"), sent))
    assert app.bodies == [b"abcde"]
    assert sent.sent[0]["status"] == 200


@pytest.mark.parametrize("declared", [True, False])
def test_an_oversize_body_is_drained_then_refused(declared: bool) -> None:
    app, sent = EchoApp(), Recorder()
    guard = RequestGuard(app, message_limit=10, timeout_s=5)
    headers = [(b"content-length", b"60")] if declared else []
    received: list[int] = []
    inner = chunks(*[b"x" * 20] * 3)

    async def receive() -> Message:
        message = await inner()
        received.append(len(message.get("body", b"")))
        return message

    run(guard(scope(*headers), receive, sent))
    assert app.bodies == []
    assert sum(received) == 60  # all of it read before the answer
    status, error, response_headers = sent.answer()
    assert (status, error["code"]) == (429, "resource_exhausted")
    assert "over the limit of 10 bytes" in error["message"]
    assert b"connection" not in response_headers  # drained: the connection stays usable


def test_a_stalled_body_is_408_and_closes() -> None:
    app, sent = EchoApp(), Recorder()
    guard = RequestGuard(app, message_limit=100, timeout_s=0.05)
    run(guard(scope(), chunks(b"{", then_stall=True), sent))
    status, error, headers = sent.answer()
    assert (status, error["code"]) == (408, "deadline_exceeded")
    assert headers[b"connection"] == b"close"
    assert app.bodies == []


def test_a_client_gone_mid_body_gets_nothing() -> None:
    app, sent = EchoApp(), Recorder()
    guard = RequestGuard(app, message_limit=100, timeout_s=5)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    run(guard(scope(), receive, sent))
    assert (app.bodies, sent.sent) == ([], [])


def test_a_client_that_stops_reading_ends_the_stream() -> None:
    """The second message is never taken: the app's send raises ClientNotReading, and every
    send after it at once (the library's attempt to write the end of the stream)."""
    outcome: list[str] = []

    async def stream_app(_scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for n in range(10):
                await send({"type": "http.response.body", "body": b"%d" % n, "more_body": True})
        except ClientNotReading:
            outcome.append("ended")
            with pytest.raises(ClientNotReading):
                await send({"type": "http.response.body", "body": b"end"})
            raise

    taken: list[Message] = []

    async def send(message: Message) -> None:
        if len(taken) == 2:  # the client's window is full: never returns
            await asyncio.Event().wait()
        taken.append(message)

    guard = RequestGuard(stream_app, message_limit=100, timeout_s=0.05)
    with pytest.raises(ClientNotReading):
        run(guard(scope(), chunks(b"{}"), send))
    assert outcome == ["ended"] and len(taken) == 2
