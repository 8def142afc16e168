"""In-memory stand-ins for the gateway's Kafka side, for servicer unit tests.

FakeSender "produces" by handing the envelope to FakeProcessor, which applies it as the processor
does (``prgate.domain.apply``) and publishes a CommandResult through FakeResults, the way the
processor and the reply topic do. Nothing here claims Kafka behaviour.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import NamedTuple

from gateway.producer import AckTimeout, KafkaUnavailable
from gateway.read_model_hub import Subscription, WatchHub
from gateway.read_model_store import PullRequestStore
from gateway.reply_router import TooManyWaiting
from prgate.domain import apply, fold, pull_request_id_of
from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2, results_pb2

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
log = logging.getLogger(__name__)


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
    """A ResultSource whose results arrive through ``publish`` (as from the results topic).

    Behaves like ReplyRouter where tests/contracts/result_source.py says so: a duplicate
    answer never replaces the first result, every result reaches every listener in order,
    and a failing listener is logged without keeping the others from the result.
    """

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
        """A result arrives (call it on the event loop)."""
        if result.command_id not in self.cache or not result.duplicate:
            self.cache[result.command_id] = result
        for listener in self.listeners:
            try:
                listener(result)
            except Exception:
                log.exception("fake results: listener failed on %s", result.command_id)
        self.arrived.setdefault(result.command_id, asyncio.Event()).set()


class FakeProcessor:
    """The processor's command application (``apply``) over its own authoritative state."""

    def __init__(self) -> None:
        self.state: dict[str, pull_request_pb2.PullRequest] = {}
        self.handled: list[str] = []

    def process(self, envelope: commands_pb2.CommandEnvelope) -> results_pb2.CommandResult:
        self.handled.append(envelope.command_id)
        pull_request_id = pull_request_id_of(envelope)
        applied = apply(self.state.get(pull_request_id), envelope, now=NOW)
        if applied.state is not None:
            self.state[pull_request_id] = applied.state
        return applied.result


class SentRecord(NamedTuple):
    """What FakeSender delivered: the envelope and what travels beside it."""

    envelope: commands_pb2.CommandEnvelope
    reply_to: str
    traceparent: str | None


class FakeSender:
    """A CommandSender that hands each envelope to ``processor`` (when set), in send order.

    ``sent`` lists the envelopes delivered (or, after an AckTimeout, perhaps delivered),
    ``records`` the same with reply_to and traceparent. ``unavailable`` makes send raise
    KafkaUnavailable (nothing delivered), ``ack_times_out`` AckTimeout.
    """

    def __init__(self, results: FakeResults, processor: FakeProcessor | None) -> None:
        self.results = results
        self.processor = processor
        self.sent: list[commands_pb2.CommandEnvelope] = []
        self.records: list[SentRecord] = []
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
        self.sent.append(envelope)  # after an ack timeout it is queued: it may still arrive
        self.records.append(SentRecord(envelope, reply_to, traceparent))
        if self.ack_times_out:
            raise AckTimeout(f"no acknowledgement within {timeout:.3g}s (fake)")
        if self.processor is not None:
            result = self.processor.process(envelope)
            asyncio.get_running_loop().call_soon(self.results.publish, result)


class FakeView:
    """A PullRequestView whose snapshots arrive through ``put`` (as from the compacted topic)
    and ``delete`` (a tombstone); ``ready`` is what caught_up() answers.

    Follows ReadModel's rules where tests/contracts/pull_request_view.py says so: an older
    snapshot never replaces a newer one; a result's events are folded when they continue the
    version, and the snapshot of that same version then replaces the folded copy without
    telling watchers again; wait_for_version waits. Listing and watching use the read model's
    own store and hub (id order after a cursor, bounded watcher queues).
    """

    def __init__(self) -> None:
        self.ready = True
        self._store = PullRequestStore()
        self._hub = WatchHub()
        self._folded: set[str] = set()  # ids whose entity came from a result, not a snapshot
        self._changed: dict[str, asyncio.Event] = {}

    def caught_up(self) -> bool:
        return self.ready

    def get(self, pull_request_id: str) -> pull_request_pb2.PullRequest | None:
        return self._store.get(pull_request_id)

    def put(self, pull_request: pull_request_pb2.PullRequest) -> None:
        """A snapshot arrives (on the event loop, or before anything waits on the view)."""
        key = pull_request.pull_request_id
        current = self._store.get(key)
        if current is None or pull_request.version > current.version:
            self._folded.discard(key)
            self._update(pull_request)
        elif pull_request.version == current.version and key in self._folded:
            self._folded.discard(key)
            self._store.put(pull_request)  # the processor's copy of what watchers already saw

    def delete(self, pull_request_id: str) -> None:
        """A tombstone arrives: the pull request is gone (watchers are not told)."""
        self._store.remove(pull_request_id)
        self._folded.discard(pull_request_id)

    def list(
        self, *, repository: str = "", status: int = 0, after: str = "", limit: int = 100
    ) -> list[pull_request_pb2.PullRequest]:
        return self._store.list(repository=repository, status=status, after=after, limit=limit)

    def subscribe(self, pull_request_id: str) -> Subscription:
        return self._hub.subscribe(pull_request_id, self._store.get(pull_request_id))

    def apply_result(self, result: results_pb2.CommandResult) -> None:
        if result.state != outcome_pb2.COMMAND_STATE_SUCCEEDED or not result.events:
            return
        versions = [event.version for event in result.events]
        key = result.pull_request_id or result.events[0].pull_request_id
        current = self._store.get(key)
        continues = versions[0] == (current.version if current is not None else 0) + 1
        consecutive = versions == list(range(versions[0], versions[0] + len(versions)))
        if not (continues and consecutive):
            return
        folded = fold(result.events, current)
        if folded is not None and folded.pull_request_id == key:
            self._folded.add(key)
            self._update(folded)

    async def wait_for_version(self, pull_request_id: str, version: int, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._has(pull_request_id, version):
            changed = self._changed.setdefault(pull_request_id, asyncio.Event())
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return self._has(pull_request_id, version)
        return True

    def _has(self, pull_request_id: str, version: int) -> bool:
        current = self._store.get(pull_request_id)
        return current is not None and current.version >= version

    def _update(self, pull_request: pull_request_pb2.PullRequest) -> None:
        self._store.put(pull_request)
        self._hub.publish(pull_request)
        changed = self._changed.pop(pull_request.pull_request_id, None)
        if changed is not None:
            changed.set()
