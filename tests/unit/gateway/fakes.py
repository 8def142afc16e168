"""In-memory stand-ins for the gateway's Kafka side, for servicer unit tests.

FakeSender "produces" by handing the envelope to FakeProcessor, which applies the real domain
(decide / fold / remember) and publishes a CommandResult through FakeResults, the way the
processor and the reply topic do. Nothing here claims Kafka behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from gateway.producer import AckTimeout, KafkaUnavailable
from gateway.reply_router import TooManyWaiting
from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2, results_pb2
from processor.domain import Accepted, command_type_name, decide, find_processed, fold, remember

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class FakeWaiter:
    def __init__(self, results: FakeResults, command_id: str) -> None:
        self._results = results
        self._command_id = command_id

    async def result(self, timeout: float | None) -> results_pb2.CommandResult | None:
        known = self._results.lookup(self._command_id)
        if known is not None:
            return known
        event = self._results.arrived.setdefault(self._command_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return None
        return self._results.lookup(self._command_id)


class FakeResults:
    def __init__(self, max_waiting: int = 100) -> None:
        self.max_waiting = max_waiting
        self.cache: dict[str, results_pb2.CommandResult] = {}
        self.arrived: dict[str, asyncio.Event] = {}
        self.listeners: list[Callable[[results_pb2.CommandResult], None]] = []
        self.waiting_now = 0

    @asynccontextmanager
    async def waiting(self, command_id: str) -> AsyncIterator[FakeWaiter]:
        if self.waiting_now >= self.max_waiting:
            raise TooManyWaiting(f"{self.waiting_now} waiting")
        self.waiting_now += 1
        try:
            yield FakeWaiter(self, command_id)
        finally:
            self.waiting_now -= 1

    def lookup(self, command_id: str) -> results_pb2.CommandResult | None:
        return self.cache.get(command_id)

    def add_listener(self, callback: Callable[[results_pb2.CommandResult], None]) -> None:
        self.listeners.append(callback)

    def publish(self, result: results_pb2.CommandResult) -> None:
        self.cache[result.command_id] = result
        for listener in self.listeners:
            listener(result)
        self.arrived.setdefault(result.command_id, asyncio.Event()).set()


class FakeProcessor:
    """The processor's decision logic over its own authoritative state."""

    def __init__(self) -> None:
        self.state: dict[str, pull_request_pb2.PullRequest] = {}
        self.handled: list[str] = []

    def process(self, envelope: commands_pb2.CommandEnvelope) -> results_pb2.CommandResult:
        self.handled.append(envelope.command_id)
        state = self.state.get(envelope.pull_request_id)
        result = results_pb2.CommandResult(
            command_id=envelope.command_id,
            pull_request_id=envelope.pull_request_id,
            command_type=command_type_name(envelope),
        )
        processed = find_processed(state, envelope.command_id)
        if processed is not None:
            result.state = processed.state
            result.version = processed.version
            result.duplicate = True
            return result
        decision = decide(state, envelope, now=NOW)
        if isinstance(decision, Accepted):
            new_state = fold(decision.events, state)
            result.state = outcome_pb2.COMMAND_STATE_SUCCEEDED
            result.events.extend(decision.events)
            if new_state is not None:
                result.version = new_state.version
                self.state[envelope.pull_request_id] = remember(
                    new_state,
                    outcome_pb2.ProcessedCommand(
                        command_id=envelope.command_id,
                        state=result.state,
                        version=new_state.version,
                    ),
                )
        else:
            result.state = outcome_pb2.COMMAND_STATE_REJECTED
            result.violations.extend(decision.violations)
            result.version = state.version if state is not None else 0
        return result


class FakeSender:
    def __init__(self, results: FakeResults, processor: FakeProcessor | None) -> None:
        self.results = results
        self.processor = processor
        self.sent: list[commands_pb2.CommandEnvelope] = []
        self.unavailable = False
        self.ack_times_out = False

    async def send(
        self,
        envelope: commands_pb2.CommandEnvelope,
        *,
        reply_to: str,
        timeout: float,
        traceparent: str | None = None,
    ) -> None:
        if self.unavailable:
            raise KafkaUnavailable("broker unreachable (fake)")
        if self.ack_times_out:
            self.sent.append(envelope)  # queued: it may still be delivered
            raise AckTimeout(f"no acknowledgement within {timeout:.3g}s (fake)")
        self.sent.append(envelope)
        if self.processor is not None:
            result = self.processor.process(envelope)
            asyncio.get_running_loop().call_soon(self.results.publish, result)


class FakeSubscription:
    def __init__(self, view: FakeView, pull_request_id: str) -> None:
        self.queue: asyncio.Queue[pull_request_pb2.PullRequest] = asyncio.Queue()
        self._view = view
        self._id = pull_request_id
        current = view.get(pull_request_id)
        if current is not None:
            self.queue.put_nowait(current)
        view.subscribers.setdefault(pull_request_id, []).append(self)

    def __aiter__(self) -> FakeSubscription:
        return self

    async def __anext__(self) -> pull_request_pb2.PullRequest:
        return await self.queue.get()

    def close(self) -> None:
        self._view.subscribers.get(self._id, []).remove(self)


class FakeView:
    def __init__(self) -> None:
        self.ready = True
        self.entities: dict[str, pull_request_pb2.PullRequest] = {}
        self.subscribers: dict[str, list[FakeSubscription]] = {}

    def caught_up(self) -> bool:
        return self.ready

    def get(self, pull_request_id: str) -> pull_request_pb2.PullRequest | None:
        return self.entities.get(pull_request_id)

    def put(self, pull_request: pull_request_pb2.PullRequest) -> None:
        self.entities[pull_request.pull_request_id] = pull_request
        for subscription in self.subscribers.get(pull_request.pull_request_id, []):
            subscription.queue.put_nowait(pull_request)

    def list(
        self, *, repository: str = "", status: int = 0, page_size: int = 100, page_token: str = ""
    ) -> tuple[list[pull_request_pb2.PullRequest], str]:
        if page_token and page_token not in self.entities:
            raise ValueError("unknown token")
        items = sorted(
            (
                p
                for p in self.entities.values()
                if (not repository or p.repository == repository)
                and (not status or p.status == status)
                and p.pull_request_id > page_token
            ),
            key=lambda p: p.pull_request_id,
        )
        page = items[:page_size]
        token = page[-1].pull_request_id if len(items) > page_size else ""
        return page, token

    def subscribe(self, pull_request_id: str) -> FakeSubscription:
        return FakeSubscription(self, pull_request_id)

    def apply_result(self, result: results_pb2.CommandResult) -> None:
        if result.state != outcome_pb2.COMMAND_STATE_SUCCEEDED or not result.events:
            return
        current = self.entities.get(result.pull_request_id)
        expected = (current.version if current is not None else 0) + 1
        if result.events[0].version == expected:
            folded = fold(result.events, current)
            if folded is not None:
                self.put(folded)

    async def wait_for_version(self, pull_request_id: str, version: int, timeout: float) -> bool:
        current = self.entities.get(pull_request_id)
        return current is not None and current.version >= version
