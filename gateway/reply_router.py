"""Routes CommandResults from the results topic to the calls waiting for them.

One router per gateway reads every partition of the results topic (no consumer group, see
:mod:`prgate.kafka.tail`), starting ``lookback_s`` back in time so that a gateway started
later can still answer WatchCommand for recent commands. Every result is kept in a bounded,
time-limited cache (also those nobody waits for), then handed to the waiters of its command id
and to the listeners (the read model, for read-your-writes).

Correlation without races: a caller reserves its slot with ``waiting(command_id)`` *before*
producing the command. Registration and delivery both run on the event loop, and registration
first looks into the cache, so a result is seen whether it arrives before or after the slot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType

from confluent_kafka import Consumer, Message, TopicPartition

from gateway.ports import KafkaUnavailable, TooManyWaiting
from gateway.result_cache import TtlCache
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.tail import TopicTail
from prgate.v1.results_pb2 import CommandResult

__all__ = ["ReplyRouter", "TooManyWaiting", "Waiter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Garbage:
    offset: int
    reason: str


class _Slot(AbstractAsyncContextManager["ReplyRouter.Waiter"]):
    def __init__(self, router: ReplyRouter, command_id: str) -> None:
        self._router = router
        self._command_id = command_id
        self._waiter: ReplyRouter.Waiter | None = None

    async def __aenter__(self) -> ReplyRouter.Waiter:
        self._waiter = self._router._register(self._command_id)
        return self._waiter

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._waiter is not None:
            self._router._unregister(self._waiter)
            self._waiter = None


class ReplyRouter:
    """Consumes the results topic and correlates results with waiting calls by command id."""

    class Waiter:
        """One reserved slot for one command id; awaits that command's result."""

        def __init__(self, router: ReplyRouter, command_id: str) -> None:
            self.command_id = command_id
            self._router = router
            self._future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()

        def _deliver(self, result: CommandResult) -> None:
            if not self._future.done():
                self._future.set_result(result)

        async def result(self, timeout: float | None) -> CommandResult | None:
            """The command's result; None if it does not arrive within ``timeout`` seconds."""
            if not self._future.done():
                cached = self._router.lookup(self.command_id)
                if cached is not None:
                    return cached
            try:
                # shield: a timeout must not cancel the future other result() calls may await.
                return await asyncio.wait_for(asyncio.shield(self._future), timeout)
            except TimeoutError:
                return None

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        max_waiting: int = 10_000,
        cache_size: int = 100_000,
        cache_ttl_s: float = 600.0,
        lookback_s: float = 300.0,
        start_timeout_s: float = 15.0,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.topic = kafka.topics.results
        self._max_waiting = max_waiting
        self._lookback_s = lookback_s
        self._start_timeout_s = start_timeout_s
        self._cache: TtlCache[str, CommandResult] = TtlCache(cache_size, cache_ttl_s)
        self._waiters: dict[str, set[Waiter]] = {}
        self._waiting = 0
        self._listeners: list[Callable[[CommandResult], None]] = []
        self._results = 0
        self._garbage = 0
        self._tail: TopicTail[CommandResult | _Garbage] = TopicTail(
            kafka,
            self.topic,
            name="gateway-replies",
            decode=_decode,
            apply=self._apply,
            start_offsets=self._lookback_offsets,
            extra=extra,
        )

    async def start(self, *, wait: bool = True) -> None:
        """Start consuming; returns once all partitions are assigned and positioned.

        Raises KafkaUnavailable when that does not happen within ``start_timeout_s``. With
        ``wait=False`` it returns at once and keeps trying until Kafka answers (the gateway
        reports NOT_SERVING until :meth:`caught_up`).
        """
        assigned = self._tail.start()
        if not wait:
            # Nobody awaits the assignment; keep a failed one from being reported as unretrieved.
            assigned.add_done_callback(lambda f: f.cancelled() or f.exception())
            return
        try:
            await asyncio.wait_for(asyncio.shield(assigned), self._start_timeout_s)
        except Exception as exc:
            await self._tail.close()
            raise KafkaUnavailable(
                f"could not assign the results topic {self.topic} within "
                f"{self._start_timeout_s:.3g}s: {exc!r}"
            ) from exc

    def _lookback_offsets(
        self, consumer: Consumer, partitions: list[TopicPartition]
    ) -> list[TopicPartition]:
        # Runs on the consumer thread. offsets_for_times answers -1 (= OFFSET_END) for a
        # partition without records that recent, which is exactly where we want to start.
        since_ms = int((time.time() - self._lookback_s) * 1000)
        query = [TopicPartition(tp.topic, tp.partition, since_ms) for tp in partitions]
        found = consumer.offsets_for_times(query, timeout=self._start_timeout_s / 3)
        for tp in found:
            if tp.error is not None:
                raise KafkaUnavailable(f"offsets_for_times {tp}: {tp.error}")
        return [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in found]

    def waiting(self, command_id: str) -> AbstractAsyncContextManager[Waiter]:
        """A slot for ``command_id``: enter it before producing the command.

        Entering raises TooManyWaiting when ``max_waiting`` slots are taken. Several slots
        may wait on one command id (the unary call and WatchCommand streams).
        """
        return _Slot(self, command_id)

    def _register(self, command_id: str) -> Waiter:
        if self._waiting >= self._max_waiting:
            raise TooManyWaiting(
                f"{self._waiting} calls are already waiting for results (limit {self._max_waiting})"
            )
        waiter = ReplyRouter.Waiter(self, command_id)
        cached = self._cache.get(command_id)
        if cached is not None:
            waiter._deliver(cached)
        self._waiters.setdefault(command_id, set()).add(waiter)
        self._waiting += 1
        return waiter

    def _unregister(self, waiter: Waiter) -> None:
        waiters = self._waiters.get(waiter.command_id)
        if waiters is None or waiter not in waiters:
            return
        waiters.discard(waiter)
        self._waiting -= 1
        if not waiters:
            del self._waiters[waiter.command_id]

    def lookup(self, command_id: str) -> CommandResult | None:
        """The result of ``command_id`` if it arrived recently (bounded, time-limited cache)."""
        return self._cache.get(command_id)

    def waiting_count(self) -> int:
        """How many slots are reserved right now."""
        return self._waiting

    def add_listener(self, callback: Callable[[CommandResult], None]) -> None:
        """Call ``callback`` on the event loop for every result that arrives."""
        self._listeners.append(callback)

    def caught_up(self) -> bool:
        """True once the router reached the end offsets the results topic had at start."""
        return self._tail.caught_up()

    def stats(self) -> dict[str, int]:
        """Counters for logs and metrics."""
        return {
            "results": self._results,
            "garbage": self._garbage,
            "cached": len(self._cache),
            "waiting": self._waiting,
            "evicted": self._cache.evicted,
            "errors": self._tail.errors,
        }

    def _apply(self, batch: Sequence[CommandResult | _Garbage]) -> None:
        for item in batch:
            if isinstance(item, _Garbage):
                self._garbage += 1
                log.warning(
                    "result_garbage",
                    extra={"topic": self.topic, "offset": item.offset, "reason": item.reason},
                )
                continue
            self._route(item)

    def _route(self, result: CommandResult) -> None:
        self._results += 1
        known = self._cache.get(result.command_id)
        # A duplicate answer (redelivered command) carries no events; keep the original.
        if known is None or not result.duplicate:
            self._cache.put(result.command_id, result)
        for waiter in self._waiters.get(result.command_id, ()):
            waiter._deliver(known if known is not None and result.duplicate else result)
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:
                log.exception("result_listener_failed", extra={"command_id": result.command_id})

    async def close(self) -> None:
        """Stop the consumer thread and close the consumer; waiting calls keep their slots."""
        await self._tail.close()


# The name callers use: ``from gateway.reply_router import Waiter``.
Waiter = ReplyRouter.Waiter


def _decode(msg: Message) -> CommandResult | _Garbage:
    """Runs on the consumer thread: bytes to CommandResult, or a note why not."""
    try:
        return codec.decode_result(msg.value(), msg.headers())
    except codec.Undecodable as exc:
        return _Garbage(msg.offset() or 0, str(exc))
